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
    tonic_prost_build::configure()
        // Chunk bytes as `Bytes`: slices of the frame on the way out, no copy on the way in.
        .bytes(".kiseki.namespace.v1.ChunkPiece.data")
        .compile_fds(fds)?;
    Ok(())
}
