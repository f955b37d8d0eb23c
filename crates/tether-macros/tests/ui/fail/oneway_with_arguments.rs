#[tether::service]
pub trait Logger {
    #[oneway(true)]
    async fn log(&self, line: String);
}

fn main() {}
