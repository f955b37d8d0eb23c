//! The service the examples share: a calculator, defined once and used by the provider, the
//! consumer and the quickstart.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// What can go wrong in a division; reaches the caller as this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalcError {
    /// The divisor was zero.
    DivideByZero,
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("divide by zero")
    }
}

impl std::error::Error for CalcError {}

/// A calculator, served as `demo.Calculator` version `1.0.0`.
#[tether::service(name = "demo.Calculator", version = "1.0.0")]
pub trait Calculator {
    /// The sum of `a` and `b`, wrapping on overflow.
    #[idempotent]
    async fn add(&self, a: i64, b: i64) -> i64;

    /// `a / b`, or an error when `b` is zero.
    #[idempotent]
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;

    /// Records a line in the provider's log; nothing comes back.
    #[oneway]
    async fn log(&self, line: String);

    /// How many calls this provider has answered.
    async fn calls(&self) -> u64;

    /// The sum of `a` and `b`, with the address of the provider that computed it: how the
    /// consumer shows where each call went.
    #[idempotent]
    async fn sum(&self, a: i64, b: i64) -> Answer;
}

/// A value and the provider that computed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The value.
    pub value: i64,
    /// The provider's address, as it announces it.
    pub provider: String,
}

/// The provider's implementation.
#[derive(Debug, Default)]
pub struct Calc {
    calls: AtomicU64,
    address: String,
}

impl Calc {
    /// A calculator that names itself `address` in its answers.
    pub fn at(address: impl Into<String>) -> Self {
        Self {
            calls: AtomicU64::new(0),
            address: address.into(),
        }
    }

    fn count(&self) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        self.count();
        a.wrapping_add(b)
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        self.count();
        a.checked_div(b).ok_or(CalcError::DivideByZero)
    }

    async fn log(&self, line: String) {
        self.count();
        tracing::info!(%line, "consumer says");
    }

    async fn calls(&self) -> u64 {
        self.count()
    }

    async fn sum(&self, a: i64, b: i64) -> Answer {
        self.count();
        Answer {
            value: a.wrapping_add(b),
            provider: self.address.clone(),
        }
    }
}

/// Logs to stderr, at `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
