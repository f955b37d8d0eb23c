#[tether::service]
pub trait Names {
    async fn first(&self) -> Option<&'static str>;
}

fn main() {}
