#[tether::service]
pub trait Store {
    async fn get<'a>(&'a self, key: String) -> String;
}

fn main() {}
