#[tether::service]
pub trait Accounts {
    #[hash_key(account)]
    async fn balance(&self, owner: String) -> u64;
}

fn main() {}
