//! Compiles the protos with protox (pure Rust, no `protoc`) and generates tonic code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/kiseki/keyserver/v1/keyserver.proto",
        "proto/kiseki/namespace/v1/native.proto",
        "proto/kiseki/cluster/v1/cluster.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
