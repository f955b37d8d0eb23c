//! Generates the tonic echo service from a hand-written description, so no `protoc` is needed.

use tonic_build::manual::{Builder, Method, Service};

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // The message type is written by hand in `src/stacks/tonic.rs`; protobuf encodes it.
    let echo = Service::builder()
        .name("Echo")
        .package("bench")
        .method(
            Method::builder()
                .name("echo")
                .route_name("Echo")
                .input_type("crate::stacks::tonic::EchoMessage")
                .output_type("crate::stacks::tonic::EchoMessage")
                .codec_path("tonic_prost::ProstCodec")
                .build(),
        )
        .build();
    // Writes `bench.Echo.rs` (package, then service name) to `OUT_DIR`.
    Builder::new().compile(&[echo]);
}
