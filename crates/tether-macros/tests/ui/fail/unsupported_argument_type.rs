// Not serializable: the compiler's error points at the argument.
pub struct Handle;

#[tether::service]
pub trait Files {
    async fn close(&self, handle: Handle);
}

fn main() {}
