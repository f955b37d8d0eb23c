#[tether::service]
pub trait Store {
    async fn put<T: serde::Serialize>(&self, value: T);
}

fn main() {}
