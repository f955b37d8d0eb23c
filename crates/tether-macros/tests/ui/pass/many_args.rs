//! Methods with many arguments of many owned types, `mut` arguments, and generic containers.
#![deny(warnings)]

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    x: f64,
    y: f64,
}

#[tether::service(name = "demo.Geometry", version = "2")]
pub trait Geometry {
    #[allow(clippy::too_many_arguments)]
    async fn build(
        &self,
        name: String,
        mut points: Vec<Point>,
        tags: HashMap<String, Vec<u8>>,
        scale: Option<f32>,
        pair: (u8, i128),
        fixed: [u16; 4],
        flag: bool,
        boxed: Box<Point>,
    ) -> Result<Vec<Point>, String>;
}

struct Shapes;

impl Geometry for Shapes {
    async fn build(
        &self,
        name: String,
        mut points: Vec<Point>,
        tags: HashMap<String, Vec<u8>>,
        scale: Option<f32>,
        pair: (u8, i128),
        fixed: [u16; 4],
        flag: bool,
        boxed: Box<Point>,
    ) -> Result<Vec<Point>, String> {
        let _ = (name, tags, scale, pair, fixed, flag);
        points.push(*boxed);
        Ok(points)
    }
}

async fn call(client: GeometryClient) -> Result<Result<Vec<Point>, String>, tether::Error> {
    client
        .build(
            "square".to_owned(),
            vec![Point { x: 0.0, y: 0.0 }],
            HashMap::new(),
            Some(2.0),
            (1, -1),
            [1, 2, 3, 4],
            true,
            Box::new(Point { x: 1.0, y: 1.0 }),
        )
        .await
}

fn main() {
    let _server = GeometryServer::new(Shapes);
    let _ = call;
}
