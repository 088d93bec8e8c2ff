//! Compiles the control plane's protobuf definitions (`proto/starwal/v1/*.proto`) into Rust with
//! tonic, using the `protoc` binary vendored in the `protoc-bin-vendored` crate: a build never
//! needs a system protoc. The encoded file descriptor set is written next to the generated code so
//! the server can answer gRPC reflection (`grpcurl list`).

use std::path::PathBuf;

const PROTOS: [&str; 3] = [
    "proto/starwal/v1/status.proto",
    "proto/starwal/v1/control.proto",
    "proto/starwal/v1/metrics.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out_dir.join("starwal_v1_descriptor.bin"))
        .compile_with_config(config, &PROTOS, &["proto"])?;
    Ok(())
}
