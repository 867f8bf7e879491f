//! Settings of one endpoint (brpc's per-connection RDMA flags).

use super::EndpointError;
use crate::flags;
use crate::handshake::{MIN_BLOCK_SIZE, MIN_QP_SIZE};

/// Settings of one endpoint. [`EndpointConfig::from_flags`] reads them from brpc's flags;
/// [`Default`] gives brpc's defaults without reading flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Send queue depth (`rdma_sq_size`), announced in the hello.
    pub sq_size: u16,
    /// Receive queue depth (`rdma_rq_size`): receive buffers posted, announced in the hello.
    pub rq_size: u16,
    /// Bytes of each receive buffer (`rdma_recv_block_type`: 8160 / 65504 / 2097120), announced
    /// in the hello: the peer never sends a larger message.
    pub recv_block_size: usize,
    /// Received messages of at least this many bytes are handed over without copying
    /// (`rdma_zerocopy_min_size`).
    pub zerocopy_min_size: usize,
    /// Whether receives may be handed over without copying at all (`rdma_recv_zerocopy`).
    pub recv_zerocopy: bool,
    /// Completions taken per poll of the completion queue (`rdma_cqe_poll_once`).
    pub cqe_poll_once: usize,
}

impl Default for EndpointConfig {
    /// brpc's defaults: queues of 128, 8 KiB receive blocks, zero-copy from 512 bytes, 32
    /// completions per poll.
    fn default() -> Self {
        EndpointConfig {
            sq_size: 128,
            rq_size: 128,
            recv_block_size: flags::recv_block_size("default").unwrap_or(8160) as usize,
            zerocopy_min_size: 512,
            recv_zerocopy: true,
            cqe_poll_once: 32,
        }
    }
}

impl EndpointConfig {
    /// The settings the flags give now: `rdma_sq_size`, `rdma_rq_size`, `rdma_recv_block_type`,
    /// `rdma_zerocopy_min_size`, `rdma_recv_zerocopy`, `rdma_cqe_poll_once`.
    pub fn from_flags() -> EndpointConfig {
        let d = EndpointConfig::default();
        EndpointConfig {
            // The validators keep queue sizes within 16..=65535.
            sq_size: u16::try_from(flags::RDMA_SQ_SIZE.get()).unwrap_or(u16::MAX),
            rq_size: u16::try_from(flags::RDMA_RQ_SIZE.get()).unwrap_or(u16::MAX),
            recv_block_size: flags::recv_block_size(flags::RDMA_RECV_BLOCK_TYPE.get())
                .map_or(d.recv_block_size, |b| b as usize),
            zerocopy_min_size: flags::RDMA_ZEROCOPY_MIN_SIZE.get() as usize,
            recv_zerocopy: flags::RDMA_RECV_ZEROCOPY.get(),
            cqe_poll_once: (flags::RDMA_CQE_POLL_ONCE.get() as usize).max(1),
        }
    }

    /// Checks the ranges the hello and the verbs allow; the error names the field.
    pub fn validate(&self) -> Result<(), EndpointError> {
        if self.sq_size < MIN_QP_SIZE || self.rq_size < MIN_QP_SIZE {
            return Err(EndpointError::Config(format!(
                "sq_size={} and rq_size={} must be at least {MIN_QP_SIZE} (rdma_sq_size, rdma_rq_size)",
                self.sq_size, self.rq_size
            )));
        }
        if self.recv_block_size < MIN_BLOCK_SIZE as usize || self.recv_block_size > 1 << 30 {
            return Err(EndpointError::Config(format!(
                "recv_block_size={} must be in {MIN_BLOCK_SIZE}..=1073741824 (rdma_recv_block_type)",
                self.recv_block_size
            )));
        }
        if self.cqe_poll_once == 0 {
            return Err(EndpointError::Config(
                "cqe_poll_once must be at least 1 (rdma_cqe_poll_once)".into(),
            ));
        }
        Ok(())
    }

    /// Size of the pool blocks receive buffers are cut from: `recv_block_size` rounded up to a
    /// power of two (8160 → 8 KiB, as brpc leaves room for a block header).
    pub fn pool_block_size(&self) -> usize {
        self.recv_block_size.next_power_of_two()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_flags_and_validate() {
        let c = EndpointConfig::from_flags();
        assert_eq!(c, EndpointConfig::default());
        assert_eq!(c.recv_block_size, 8160);
        assert_eq!(c.pool_block_size(), 8192);
        c.validate().unwrap();
        let bad = EndpointConfig { rq_size: 8, ..c };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("rdma_rq_size"));
        let bad = EndpointConfig {
            recv_block_size: 100,
            ..c
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("recv_block_size"));
    }
}
