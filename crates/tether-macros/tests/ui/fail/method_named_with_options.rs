#[tether::service(name = "demo.Settings")]
pub trait Settings {
    async fn with_options(&self, options: Vec<String>);
}

fn main() {}
