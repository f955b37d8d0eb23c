#[tether::service]
pub struct Calculator;

fn main() {}
