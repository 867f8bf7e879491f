//! brpc's RDMA flags, with brpc's names and defaults (DESIGN.md §5), plus `rdma_backend`.
//!
//! Types are the natural unsigned ones where brpc's `int32` can never be negative, with
//! validators for the ranges the wire format and the verbs allow (queue sizes travel as `u16`
//! in the hello and must be at least [`MIN_QP_SIZE`]). Flags read per connection or per
//! completion are reloadable; those that shape threads or devices are read once at start.

use crate::handshake::MIN_QP_SIZE;
use spindle_runtime::define_flag;

fn validate_queue_size(v: &u32) -> Result<(), String> {
    if (u32::from(MIN_QP_SIZE)..=u32::from(u16::MAX)).contains(v) {
        Ok(())
    } else {
        Err(format!("must be in {MIN_QP_SIZE}..=65535"))
    }
}

/// brpc's bounds on a pool region: 32 MB ..= 1 TB.
fn validate_pool_size_mb(v: &u32) -> Result<(), String> {
    if (32..=1_048_576).contains(v) {
        Ok(())
    } else {
        Err("must be in 32..=1048576 (MB)".into())
    }
}

define_flag!(
    /// Send queue depth of each RDMA queue pair.
    pub static RDMA_SQ_SIZE: u32 = 128, "SQ size for RDMA (16..=65535)",
    validator = validate_queue_size
);

define_flag!(
    /// Receive queue depth of each RDMA queue pair.
    pub static RDMA_RQ_SIZE: u32 = 128, "RQ size for RDMA (16..=65535)",
    validator = validate_queue_size
);

define_flag!(
    /// Hand received blocks to the reader without copying.
    pub static RDMA_RECV_ZEROCOPY: bool = true, "enable zerocopy for receive side",
    reloadable = true
);

define_flag!(
    /// Received messages smaller than this are copied instead of handed over.
    pub static RDMA_ZEROCOPY_MIN_SIZE: u32 = 512, "the minimal size for receive zerocopy",
    reloadable = true
);

define_flag!(
    /// Completions taken per poll of a completion queue.
    pub static RDMA_CQE_POLL_ONCE: u32 = 32, "the maximum of cqe number polled once (1..=1024)",
    validator = |v| if (1..=1024).contains(v) { Ok(()) } else { Err("must be in 1..=1024".into()) },
    reloadable = true
);

define_flag!(
    /// Polling mode: pollers loop over the completion queues instead of the event dispatchers
    /// watching completion fds.
    pub static RDMA_USE_POLLING: bool = false, "use polling mode for RDMA"
);

define_flag!(
    /// Number of pollers in polling mode.
    pub static RDMA_POLLER_NUM: usize = 1, "poller number in RDMA polling mode (1..=64)",
    validator = |v| if (1..=64).contains(v) { Ok(()) } else { Err("must be in 1..=64".into()) }
);

define_flag!(
    /// Pollers yield the CPU between rounds.
    pub static RDMA_POLLER_YIELD: bool = false, "yield thread in RDMA polling mode"
);

define_flag!(
    /// The RDMA device (HCA) to use; empty = the first active one.
    pub static RDMA_DEVICE: String = "",
    "the name of the HCA device used (empty means using the first active device)"
);

define_flag!(
    /// The device port to use.
    pub static RDMA_PORT: u32 = 1, "the port number to use; for RoCE, it is always 1 (1..=255)",
    validator = |v| if (1..=255).contains(v) { Ok(()) } else { Err("must be in 1..=255".into()) }
);

define_flag!(
    /// Index into the port's GID table.
    pub static RDMA_GID_INDEX: i32 = -1,
    "the GID index to use; -1 means using the last one (-1..=255)",
    validator = |v| if (-1..=255).contains(v) { Ok(()) } else { Err("must be in -1..=255".into()) }
);

define_flag!(
    /// Size class of the blocks posted as receive buffers.
    pub static RDMA_RECV_BLOCK_TYPE: Choice = "default",
    "default size type for recv WR: default (8KB - 32B), large (64KB - 32B), huge (2MB - 32B)",
    choices = ["default", "large", "huge"]
);

define_flag!(
    /// Registered memory reserved at start.
    pub static RDMA_MEMORY_POOL_INITIAL_SIZE_MB: u32 = 1024,
    "initial size of memory pool for RDMA (MB), 32..=1048576",
    validator = validate_pool_size_mb
);

define_flag!(
    /// Registered memory added each time the pool grows.
    pub static RDMA_MEMORY_POOL_INCREASE_SIZE_MB: u32 = 1024,
    "increased size of memory pool for RDMA (MB), 32..=1048576",
    validator = validate_pool_size_mb
);

define_flag!(
    /// Most registered regions the pool may hold.
    pub static RDMA_MEMORY_POOL_MAX_REGIONS: u32 = 3, "max number of regions (1..=16)",
    validator = |v| if (1..=16).contains(v) { Ok(()) } else { Err("must be in 1..=16".into()) }
);

define_flag!(
    /// Buckets of the pool's free lists.
    pub static RDMA_MEMORY_POOL_BUCKETS: u32 = 4, "number of buckets to reduce race (1..=16)",
    validator = |v| if (1..=16).contains(v) { Ok(()) } else { Err("must be in 1..=16".into()) }
);

define_flag!(
    /// Blocks each thread caches.
    pub static RDMA_MEMORY_POOL_TLS_CACHE_NUM: u32 = 128, "number of cached block in tls"
);

define_flag!(
    /// Scatter/gather entries per work request; 0 = what the device allows.
    pub static RDMA_MAX_SGE: u32 = 0, "max SGE num in a WR (0 = the device's limit)"
);

define_flag!(
    /// Handshake version a client sends: 2 (`"RDMA"`, understood by every brpc) or 3 (`"RDM3"`).
    pub static RDMA_CLIENT_HANDSHAKE_VERSION: i32 = 2,
    "RDMA handshake protocol version used by client: 2 = legacy 'RDMA' magic, 3 = 'RDM3' protobuf",
    validator = |v| if *v == 2 || *v == 3 { Ok(()) } else { Err("must be 2 or 3".into()) },
    reloadable = true
);

define_flag!(
    /// Negotiate ECE in the v3 handshake.
    pub static RDMA_ECE: bool = false,
    "enable end-to-end ECE negotiation in the RDMA v3 handshake",
    reloadable = true
);

define_flag!(
    /// Log RDMA events verbosely.
    pub static RDMA_TRACE_VERBOSE: bool = false, "print log message verbosely",
    reloadable = true
);

define_flag!(
    /// Which verbs backend serves RDMA (Spindle's own flag): `auto` takes a hardware device if
    /// the `ibverbs` feature is built and one is present, else the software fabric.
    pub static RDMA_BACKEND: Choice = "auto",
    "verbs backend: auto (ibverbs device if present, else the software fabric), fabric, ibverbs",
    choices = ["auto", "fabric", "ibverbs"]
);

/// Bytes of a receive block for a value of `rdma_recv_block_type` (brpc leaves 32 bytes of each
/// 8 KiB / 64 KiB / 2 MiB block for the IOBuf block header).
pub fn recv_block_size(block_type: &str) -> Option<u32> {
    const HEADER: u32 = 32;
    match block_type {
        "default" => Some(8 * 1024 - HEADER),
        "large" => Some(64 * 1024 - HEADER),
        "huge" => Some(2 * 1024 * 1024 - HEADER),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_runtime::flags;

    #[test]
    fn defaults_are_brpcs() {
        assert_eq!(RDMA_SQ_SIZE.get(), 128);
        assert_eq!(RDMA_RQ_SIZE.get(), 128);
        assert!(RDMA_RECV_ZEROCOPY.get());
        assert_eq!(RDMA_ZEROCOPY_MIN_SIZE.get(), 512);
        assert_eq!(RDMA_CQE_POLL_ONCE.get(), 32);
        assert!(!RDMA_USE_POLLING.get());
        assert_eq!(RDMA_POLLER_NUM.get(), 1);
        assert!(!RDMA_POLLER_YIELD.get());
        assert_eq!(RDMA_DEVICE.get(), "");
        assert_eq!(RDMA_PORT.get(), 1);
        assert_eq!(RDMA_GID_INDEX.get(), -1);
        assert_eq!(RDMA_RECV_BLOCK_TYPE.get(), "default");
        assert_eq!(RDMA_MEMORY_POOL_INITIAL_SIZE_MB.get(), 1024);
        assert_eq!(RDMA_CLIENT_HANDSHAKE_VERSION.get(), 2);
        assert_eq!(RDMA_BACKEND.get(), "auto");
        flags::check_defaults().unwrap();
    }

    #[test]
    fn listed_by_name_and_bad_values_name_the_flag() {
        let info = flags::info("rdma_gid_index").unwrap();
        assert_eq!(info.crate_name(), "spindle_rdma");
        assert_eq!(info.default, "-1");
        let e = flags::set("rdma_sq_size", "8").unwrap_err().to_string();
        assert!(
            e.contains("--rdma_sq_size") && e.contains("16..=65535"),
            "{e}"
        );
        let e = flags::set("rdma_client_handshake_version", "4")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be 2 or 3"), "{e}");
        assert!(flags::set("rdma_recv_block_type", "tiny").is_err());
        assert_eq!(RDMA_SQ_SIZE.get(), 128);
    }

    #[test]
    fn block_sizes() {
        assert_eq!(recv_block_size("default"), Some(8160));
        assert_eq!(recv_block_size("large"), Some(65504));
        assert_eq!(recv_block_size("huge"), Some(2097120));
        assert_eq!(recv_block_size("x"), None);
    }
}
