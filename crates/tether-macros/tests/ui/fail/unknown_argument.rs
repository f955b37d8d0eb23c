#[tether::service(name = "demo.Calculator", timeout = "5s")]
pub trait Calculator {
    async fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {}
