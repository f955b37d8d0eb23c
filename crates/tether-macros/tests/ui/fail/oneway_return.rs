#[tether::service]
pub trait Logger {
    #[oneway]
    async fn log(&self, line: String) -> bool;
}

fn main() {}
