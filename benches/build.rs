//! Compiles `proto/grpc_echo.proto` into tonic's client and server code for the gRPC peer of
//! `echo_bench`. protoc is the one vendored by `protoc-bin-vendored` (no system protoc needed);
//! `PROTOC` set in the environment still wins.

fn main() {
    let proto = "proto/grpc_echo.proto";
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = match std::env::var_os("PROTOC") {
        Some(p) => std::path::PathBuf::from(p),
        None => match protoc_bin_vendored::protoc_bin_path() {
            Ok(p) => p,
            Err(e) => fail(&format!(
                "no vendored protoc for this platform ({e}); set PROTOC"
            )),
        },
    };
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // `bytes` fields as `bytes::Bytes`: the 1 MiB attachment is not copied into a `Vec`.
    config.bytes(["."]);
    if let Err(e) = tonic_prost_build::configure().compile_with_config(config, &[proto], &["proto"])
    {
        fail(&format!("failed to compile {proto}: {e}"));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1);
}
