//! The generated client and server talking through a real tether server, in every format this
//! build enables: each kind of method, a user error, a oneway call, a default body, and a method
//! the server does not know.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether::{Client, ErrorKind, Serialization, Server};
use tokio::sync::mpsc;

/// How long any wait may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum CalcError {
    DivideByZero,
}

#[tether::service(name = "demo.Calculator", version = "1.0.0", group = "blue")]
trait Calculator {
    async fn add(&self, a: i64, b: i64) -> i64;
    #[idempotent]
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    #[oneway]
    async fn log(&self, line: String);
    async fn ping(&self);
    async fn describe(&self, mut words: Vec<String>, separator: char) -> String {
        words.sort();
        words.join(&separator.to_string())
    }
}

/// The same service as a newer client sees it: one method more.
#[tether::service(name = "demo.Calculator", version = "1.0.0", group = "blue")]
trait CalculatorV2 {
    async fn add(&self, a: i64, b: i64) -> i64;
    async fn sqrt(&self, x: f64) -> f64;
}

struct Calc {
    logged: mpsc::UnboundedSender<String>,
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        a.checked_div(b).ok_or(CalcError::DivideByZero)
    }

    async fn log(&self, line: String) {
        let _ = self.logged.send(line);
    }

    async fn ping(&self) {}
}

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_method_round_trips_in_every_format() {
    let (logged, mut log) = mpsc::unbounded_channel();
    let server = Server::builder()
        .serve(CalculatorServer::new(Calc { logged }))
        .bind("127.0.0.1:0")
        .await
        .expect("the server binds");

    for serialization in Serialization::ALL.into_iter().filter(|s| s.is_enabled()) {
        let client = Client::builder()
            .serialization(serialization)
            .connect(server.local_addr())
            .await
            .expect("the client connects");
        let calculator = CalculatorClient::new(client.clone());

        let sum = bounded("add", calculator.add(40, 2)).await;
        assert_eq!(sum.expect("add is answered"), 42, "{serialization:?}");
        let quotient = bounded("div", calculator.div(7, 2)).await;
        assert_eq!(quotient.expect("div is answered"), Ok(3));
        let by_zero = bounded("div by zero", calculator.div(1, 0)).await;
        assert_eq!(
            by_zero.expect("div is answered"),
            Err(CalcError::DivideByZero)
        );
        bounded("ping", calculator.ping())
            .await
            .expect("ping is answered");
        let described = bounded(
            "describe",
            calculator.describe(vec!["b".into(), "a".into()], '+'),
        );
        assert_eq!(described.await.expect("describe is answered"), "a+b");

        let line = format!("hello in {serialization:?}");
        bounded("log", calculator.log(line.clone()))
            .await
            .expect("log is sent");
        assert_eq!(bounded("the logged line", log.recv()).await, Some(line));

        let newer = CalculatorV2Client::new(client);
        let unknown = bounded("sqrt", newer.sqrt(2.0)).await;
        let error = unknown.expect_err("the server has no `sqrt`");
        assert_eq!(error.kind(), ErrorKind::MethodNotFound, "{error}");
        assert_eq!(
            bounded("add", newer.add(1, 1))
                .await
                .expect("add is answered"),
            2
        );
    }
    server.shutdown().await;
}
