//! File descriptor sets for reflection: the build step keeps protoc's `FileDescriptorSet` of the
//! compiled files next to the generated code and every generated service descriptor points at
//! it (`ServiceDescriptor::descriptor_set`), so a server can find the message descriptors of a
//! method at run time — what the HTTP protocol needs to map JSON bodies to protobuf messages
//! (the protobuf JSON mapping, through prost-reflect).
//!
//! The set is written by protoc itself (`--include_imports`), so it holds every message a
//! service's methods use, imports included. The generated code embeds it with
//! `include_bytes!` of the file's absolute path, which is only read while the crate compiles.

use crate::ServiceGenerator;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Where the descriptor set of one `compile_protos` call goes: `dir/descriptor_set_<hash>.bin`,
/// the hash taken over the proto file names so that several calls in one build script (each
/// with its own file list) never overwrite each other's set.
pub fn descriptor_set_path(dir: &Path, protos: &[impl AsRef<Path>]) -> PathBuf {
    let mut h = DefaultHasher::new();
    for p in protos {
        p.as_ref().hash(&mut h);
    }
    dir.join(format!("descriptor_set_{:016x}.bin", h.finish()))
}

/// The Rust expression a generated service descriptor uses to embed the set at `path`.
pub fn include_expression(path: &Path) -> String {
    // `{:?}` writes a Rust string literal (quotes and escapes included).
    format!(
        "::core::option::Option::Some(::core::include_bytes!({:?}))",
        path.display().to_string()
    )
}

/// Makes `config` write the descriptor set of the files it compiles to `path`, and returns
/// `generator` set to embed that file in every service descriptor it emits.
pub fn emit_descriptor_set(
    config: &mut prost_build::Config,
    generator: ServiceGenerator,
    path: &Path,
) -> ServiceGenerator {
    config.file_descriptor_set_path(path);
    generator.with_descriptor_set(include_expression(path))
}

/// Like [`configure`](crate::configure), and the generated service descriptors embed the file
/// descriptor set of `protos` (written to `$OUT_DIR`), for reflection (JSON over HTTP).
pub fn configure_with_descriptors(
    protos: &[impl AsRef<Path>],
) -> Result<prost_build::Config, String> {
    let out = std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set (run from a build script)")?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(crate::protoc_path()?);
    let path = descriptor_set_path(Path::new(&out), protos);
    let generator = emit_descriptor_set(&mut config, ServiceGenerator::new(), &path);
    config.service_generator(Box::new(generator));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_differ_per_file_list_and_expression_is_a_literal() {
        let dir = Path::new("/out");
        let a = descriptor_set_path(dir, &["a.proto"]);
        let b = descriptor_set_path(dir, &["b.proto"]);
        assert_ne!(a, b);
        assert_eq!(a, descriptor_set_path(dir, &["a.proto"]));
        assert!(a.starts_with(dir));
        let e = include_expression(Path::new("/o\"ut/x.bin"));
        assert_eq!(
            e,
            "::core::option::Option::Some(::core::include_bytes!(\"/o\\\"ut/x.bin\"))"
        );
    }
}
