#[tether::service(name = "a.B", name = "a.C")]
pub trait Service {
    async fn ping(&self);
}

fn main() {}
