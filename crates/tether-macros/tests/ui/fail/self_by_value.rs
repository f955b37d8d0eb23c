#[tether::service]
pub trait Worker {
    async fn run(self, job: String);
}

fn main() {}
