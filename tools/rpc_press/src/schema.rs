//! Finding the method to press: compile the `.proto` at run time (protox, no protoc needed),
//! look the method up, and turn JSON requests into encoded protobuf bodies (prost-reflect's
//! protobuf JSON mapping).

use crate::PressError;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use spindle_iobuf::IOBuf;
use std::path::{Path, PathBuf};

/// The method under load, with what it takes and returns.
#[derive(Debug, Clone)]
pub struct MethodSchema {
    /// Full service name as baidu_std sends it, e.g. `example.EchoService`.
    pub service: String,
    /// Method name, e.g. `Echo`.
    pub method: String,
    /// The request message.
    pub input: MessageDescriptor,
    /// The response message.
    pub output: MessageDescriptor,
}

impl MethodSchema {
    /// Compiles `proto` (imports resolved in `include_dirs`, then in the file's own directory)
    /// and finds `method`: `package.Service.Method`, `Service.Method`, or a bare `Method` when
    /// only one service has it.
    pub fn load(
        proto: &Path,
        include_dirs: &[PathBuf],
        method: &str,
    ) -> Result<MethodSchema, PressError> {
        let mut includes: Vec<PathBuf> = include_dirs.to_vec();
        let parent = proto
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        includes.push(parent.to_path_buf());
        let file_name = proto
            .file_name()
            .ok_or_else(|| PressError::Proto(format!("{} is not a file", proto.display())))?;
        let fds = protox::compile([Path::new(file_name)], &includes)
            .map_err(|e| PressError::Proto(format!("cannot compile {}: {e}", proto.display())))?;
        let pool = DescriptorPool::from_file_descriptor_set(fds)
            .map_err(|e| PressError::Proto(format!("bad descriptors: {e}")))?;
        Self::find(&pool, method)
    }

    /// Finds `method` in `pool` (see [`MethodSchema::load`] for the accepted spellings).
    pub fn find(pool: &DescriptorPool, method: &str) -> Result<MethodSchema, PressError> {
        let matches: Vec<MethodDescriptor> = pool
            .services()
            .flat_map(|s| s.methods().collect::<Vec<_>>())
            .filter(|m| {
                let full = format!("{}.{}", m.parent_service().full_name(), m.name());
                let short = format!("{}.{}", m.parent_service().name(), m.name());
                full == method || short == method || m.name() == method
            })
            .collect();
        let m = match matches.as_slice() {
            [m] => m.clone(),
            [] => {
                let known: Vec<String> = pool
                    .services()
                    .flat_map(|s| {
                        s.methods()
                            .map(|m| format!("{}.{}", s.full_name(), m.name()))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                return Err(PressError::Method(format!(
                    "no method \"{method}\"; the .proto has: {}",
                    if known.is_empty() {
                        "no services".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            _ => {
                return Err(PressError::Method(format!(
                    "\"{method}\" is ambiguous; write it as package.Service.Method"
                )))
            }
        };
        Ok(MethodSchema {
            service: m.parent_service().full_name().to_owned(),
            method: m.name().to_owned(),
            input: m.input(),
            output: m.output(),
        })
    }

    /// Parses `text` — one JSON request, or several written one after another (brpc's
    /// rpc_press input file) — into encoded request bodies.
    pub fn encode_requests(&self, text: &str) -> Result<Vec<Vec<u8>>, PressError> {
        let mut out = Vec::new();
        let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
        for value in stream {
            let n = out.len() + 1;
            let value =
                value.map_err(|e| PressError::Input(format!("request #{n} is not JSON: {e}")))?;
            let msg = DynamicMessage::deserialize(self.input.clone(), value).map_err(|e| {
                PressError::Input(format!(
                    "request #{n} is not a valid {}: {e}",
                    self.input.full_name()
                ))
            })?;
            out.push(msg.encode_to_vec());
        }
        if out.is_empty() {
            return Err(PressError::Input("no request in the input".to_owned()));
        }
        Ok(out)
    }

    /// The response `payload` as JSON (protobuf JSON mapping).
    pub fn response_to_json(&self, payload: IOBuf) -> Result<String, PressError> {
        let msg = DynamicMessage::decode(self.output.clone(), payload).map_err(|e| {
            PressError::Input(format!(
                "the response is not a valid {}: {e}",
                self.output.full_name()
            ))
        })?;
        serde_json::to_string(&msg).map_err(|e| PressError::Input(e.to_string()))
    }
}
