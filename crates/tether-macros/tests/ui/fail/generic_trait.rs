#[tether::service]
pub trait Cache<K> {
    async fn len(&self) -> u64;
}

fn main() {}
