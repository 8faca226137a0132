//! Generates the tonic clients (and, with the `server` feature, servers) of
//! the vendored protos in proto/ with protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    println!("cargo:rerun-if-changed=proto");
    // google.rpc on its own: the modules of src/lib.rs are flat, not nested
    // by package, so the services below refer to it by an extern path.
    tonic_prost_build::configure()
        .compile_protos(&["proto/google/rpc/status.proto"], &["proto"])?;
    tonic_prost_build::configure()
        .build_server(server)
        .build_client(true)
        .extern_path(".google.rpc", "crate::rpc")
        .compile_protos(
            &[
                "proto/build/bazel/remote/execution/v2/remote_execution.proto",
                "proto/google/bytestream/bytestream.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
