//! Compiles the protobuf files of `proto/`:
//! - the baidu_std meta (`baidu_rpc_meta.proto` and its imports) into `brpc.rs` /
//!   `brpc.policy.rs`, with `bytes` fields as `bytes::Bytes`;
//! - brpc's example echo service (`echo.proto`) into `example.rs`, with the service code of
//!   `spindle-rpc-build` (used by tests and examples), once for this crate (`crate::` paths) and
//!   once into `external/` as another crate would get it (`::spindle_rpc::` paths).
//!
//! protoc is the one vendored by `protoc-bin-vendored`, so no system protoc is needed; `PROTOC`
//! set in the environment still wins.

fn main() {
    let meta = [
        "proto/options.proto",
        "proto/streaming_rpc_meta.proto",
        "proto/baidu_rpc_meta.proto",
    ];
    let echo = ["proto/echo.proto"];
    for p in meta.iter().chain(&echo) {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed=PROTOC");

    let protoc = match spindle_rpc_build::protoc_path() {
        Ok(p) => p,
        Err(e) => fail(&e),
    };
    let mut config = prost_build::Config::new();
    config.protoc_executable(&protoc);
    // `bytes` fields as `bytes::Bytes`: no copy when they are cut out of a decoded meta.
    config.bytes(["."]);
    if let Err(e) = config.compile_protos(&meta, &["proto"]) {
        fail(&format!("failed to compile the baidu_std meta: {e}"));
    }

    let Some(out) = std::env::var_os("OUT_DIR") else {
        fail("OUT_DIR is not set");
    };
    let mut config = prost_build::Config::new();
    config.protoc_executable(&protoc);
    // The echo descriptor embeds its file descriptor set (JSON over HTTP needs it).
    let set = spindle_rpc_build::descriptors::descriptor_set_path(out.as_ref(), &echo);
    let generator = spindle_rpc_build::descriptors::emit_descriptor_set(
        &mut config,
        spindle_rpc_build::ServiceGenerator::with_crate_path("crate"),
        &set,
    );
    config.service_generator(Box::new(generator));
    if let Err(e) = config.compile_protos(&echo, &["proto"]) {
        fail(&format!("failed to compile echo.proto: {e}"));
    }

    // The same service as an external crate generates it (paths `::spindle_rpc::...`), for the
    // code-generation integration test.
    let external = std::path::Path::new(&out).join("external");
    if let Err(e) = std::fs::create_dir_all(&external) {
        fail(&format!("cannot create {}: {e}", external.display()));
    }
    let mut config = prost_build::Config::new();
    config.protoc_executable(&protoc);
    config.out_dir(&external);
    config.service_generator(Box::new(spindle_rpc_build::ServiceGenerator::new()));
    if let Err(e) = config.compile_protos(&echo, &["proto"]) {
        fail(&format!("failed to compile echo.proto: {e}"));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1);
}
