#[tether::service]
pub trait Account {
    async fn new(&self, owner: String) -> u64;
}

fn main() {}
