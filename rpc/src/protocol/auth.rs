//! Connection authentication (brpc's `Authenticator`).

use crate::errors::RpcError;
use std::net::SocketAddr;

/// Produces credentials on the client and checks them on the server. Credentials travel in the
/// first message of a connection (baidu_std: `RpcMeta.authentication_data`).
pub trait Authenticator: Send + Sync {
    /// Client side: the credential bytes to send.
    fn generate_credential(&self) -> Result<Vec<u8>, RpcError>;

    /// Server side: accepts `credential` from `peer`, or fails with `ERPCAUTH`.
    fn verify_credential(
        &self,
        credential: &[u8],
        peer: Option<SocketAddr>,
    ) -> Result<(), RpcError>;
}
