//! Compiles `proto/*.proto` (the baidu_std meta) with prost-build, using the protoc binary
//! vendored by `protoc-bin-vendored` so no system protoc is needed. `PROTOC` set in the
//! environment still wins, for platforms the vendored crate does not cover.

use std::path::PathBuf;

fn main() {
    let protos = [
        "proto/options.proto",
        "proto/streaming_rpc_meta.proto",
        "proto/baidu_rpc_meta.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed=PROTOC");

    let mut config = prost_build::Config::new();
    let protoc = match std::env::var_os("PROTOC") {
        Some(p) => PathBuf::from(p),
        None => match protoc_bin_vendored::protoc_bin_path() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("no vendored protoc for this platform ({e}); set PROTOC");
                std::process::exit(1);
            }
        },
    };
    config.protoc_executable(protoc);
    // `bytes` fields as `bytes::Bytes`: cutting them out of a decoded meta shares memory.
    config.bytes(["."]);
    if let Err(e) = config.compile_protos(&protos, &["proto"]) {
        eprintln!("failed to compile baidu_std protos: {e}");
        std::process::exit(1);
    }
}
