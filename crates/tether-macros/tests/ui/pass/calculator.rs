//! The full example: every attribute argument, `#[idempotent]`, `#[oneway]`, a `Result` return,
//! an implementation with plain `async fn`s, and the client's signatures spelled out.
#![deny(missing_docs, missing_debug_implementations, unreachable_pub, warnings)]

use serde::{Deserialize, Serialize};

/// What can go wrong in a division.
#[derive(Debug, Serialize, Deserialize)]
pub enum CalcError {
    /// The divisor was zero.
    DivideByZero,
}

/// A calculator.
#[tether::service(name = "demo.Calculator", version = "1.0.0", group = "blue")]
pub trait Calculator {
    /// docs are kept
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Divides.
    #[idempotent]
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    /// Logs a line.
    #[oneway]
    async fn log(&self, line: String);
    /// Answers.
    async fn ping(&self);
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        a.checked_div(b).ok_or(CalcError::DivideByZero)
    }

    async fn log(&self, line: String) {
        println!("{line}");
    }

    async fn ping(&self) {}
}

async fn use_client(client: CalculatorClient) -> Result<(), tether::Error> {
    let sum: Result<i64, tether::Error> = client.add(1, 2).await;
    let quotient: Result<Result<i64, CalcError>, tether::Error> = client.div(1, 0).await;
    let logged: Result<(), tether::Error> = client.log("line".to_owned()).await;
    let pong: Result<(), tether::Error> = client.ping().await;
    let _ = (sum?, quotient?, logged?, pong?);
    let _cloned: CalculatorClient = client.clone().with_options(tether::CallOptions::default());
    let _: &tether::Client = client.client();
    Ok(())
}

fn assert_dispatch<D: tether::__private::ServiceDispatch + Clone + std::fmt::Debug>(_: &D) {}

fn assert_send<T: Send>(_: &T) {}

fn main() {
    let server = CalculatorServer::new(Calc);
    assert_dispatch(&server);
    let _shared = CalculatorServer::from_arc(std::sync::Arc::new(Calc));
    assert_eq!(format!("{server:?}"), r#"CalculatorServer { service: "demo.Calculator", .. }"#);

    // Client and server see the one descriptor.
    let descriptor = CalculatorClient::DESCRIPTOR;
    assert!(std::ptr::eq(descriptor, CalculatorServer::<Calc>::DESCRIPTOR));
    assert!(std::ptr::eq(descriptor, tether::__private::ServiceDispatch::descriptor(&server)));
    assert_eq!(descriptor.name(), "demo.Calculator");
    assert_eq!(descriptor.version(), "1.0.0");
    assert_eq!(descriptor.group(), "blue");
    let methods: Vec<_> = descriptor
        .methods()
        .iter()
        .map(|m| (m.name(), m.is_oneway(), m.is_idempotent()))
        .collect();
    assert_eq!(
        methods,
        [
            ("add", false, false),
            ("div", false, true),
            ("log", true, false),
            ("ping", false, false),
        ]
    );

    // The trait's futures are `Send`, whoever implements it.
    assert_send(&Calc.add(1, 2));
    let _ = use_client;
}
