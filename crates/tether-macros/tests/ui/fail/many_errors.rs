// Every problem is reported at once, and the trait still exists for the code that uses it.
#[tether::service(version = 1)]
pub trait Calculator {
    fn add(&self, a: i64, b: i64) -> i64;
    async fn sub(&mut self, a: i64, b: &i64) -> i64;
    async fn client(&self);
}

struct Calc;

impl Calculator for Calc {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn sub(&mut self, a: i64, b: &i64) -> i64 {
        a - b
    }
    async fn client(&self) {}
}

fn main() {}
