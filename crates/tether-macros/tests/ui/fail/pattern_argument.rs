#[tether::service]
pub trait Geometry {
    async fn area(&self, (width, height): (f64, f64)) -> f64;
}

fn main() {}
