//! The hardware backend: the [`verbs`](crate::verbs) traits over libibverbs (rdma-core), through
//! the `ibverbs-sys` bindings. Built with the `ibverbs` cargo feature; needs a NIC (or a kernel
//! soft-RoCE device) to run.
//!
//! - The device is chosen by `rdma_device` (empty: the first device), `rdma_port` and
//!   `rdma_gid_index` (-1: the last entry of the port's GID table), see [`IbvDevice::from_flags`].
//! - A completion queue has its own completion channel; the channel's fd (non-blocking) is the
//!   readiness fd. [`CompletionQueue::ack_events`] drains `ibv_get_cq_event` and acknowledges.
//! - A queue pair is RC, moved to INIT on creation (all access rights, the chosen port) and to
//!   RTR/RTS by [`QueuePair::connect`] with the peer's GID (global routing, which RoCE needs and
//!   InfiniBand accepts), LID and QPN; PSNs start at 0 on both sides, as brpc does.
//! - Immediates travel in network byte order, as brpc sends them; the traits use host order.
//!
//! Every raw pointer is owned by exactly one wrapper that frees it in `Drop`; each wrapper keeps
//! an `Arc` of what it was created from, so a context outlives its domains, queues and regions.

use crate::verbs::{
    Access, BackendKind, CompletionQueue, Device, MemoryRegion, PortAddress, ProtectionDomain,
    QpAddress, QpInit, QpState, QueuePair, RecvWr, RetryConfig, SendOp, SendWr, VerbsError,
    WcOpcode, WcStatus, WorkCompletion,
};
use ibverbs_sys as ffi;
use parking_lot::Mutex;
use std::any::Any;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::ptr;
use std::sync::Arc;

/// QP timeout exponent: 4.096 µs × 2^14 ≈ 67 ms per transport retry.
const QP_TIMEOUT: u8 = 14;
/// Transport retries before `RetryExceeded`.
const QP_RETRY_CNT: u8 = 7;
/// Encoded minimum RNR NAK timer (12 = 0.64 ms).
const MIN_RNR_TIMER: u8 = 12;

fn last_error(what: &str) -> VerbsError {
    let e = io::Error::last_os_error();
    VerbsError::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn check(rc: i32, what: &str) -> Result<(), VerbsError> {
    if rc == 0 {
        Ok(())
    } else {
        // Verbs return the errno value itself (or -1 with errno set).
        let e = if rc > 0 {
            io::Error::from_raw_os_error(rc)
        } else {
            io::Error::last_os_error()
        };
        Err(VerbsError::Io(io::Error::new(
            e.kind(),
            format!("{what}: {e}"),
        )))
    }
}

/// An opened device context and port (shared by everything created from it).
struct Context {
    ctx: *mut ffi::ibv_context,
    name: String,
    port: u8,
    gid_index: i32,
    address: PortAddress,
    active_mtu: ffi::ibv_mtu,
}

// SAFETY: libibverbs contexts are thread-safe (every verb may be called from any thread); the
// pointer is only freed in Drop, when no other reference exists.
unsafe impl Send for Context {}
// SAFETY: as above; `&Context` only calls thread-safe verbs.
unsafe impl Sync for Context {}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("gid_index", &self.gid_index)
            .finish()
    }
}

/// An opened RDMA device port: the [`Device`] of the ibverbs backend.
#[derive(Debug, Clone)]
pub struct IbvDevice(Arc<Context>);

impl IbvDevice {
    /// Opens the device named by the flags `rdma_device`, `rdma_port` and `rdma_gid_index`.
    pub fn from_flags() -> Result<IbvDevice, VerbsError> {
        let name = crate::flags::RDMA_DEVICE.get();
        let port = u8::try_from(crate::flags::RDMA_PORT.get())
            .map_err(|_| VerbsError::InvalidArgument("rdma_port must be in 1..=255".into()))?;
        IbvDevice::open(&name, port, crate::flags::RDMA_GID_INDEX.get())
    }

    /// Opens device `name` (empty: the first one), port `port`, GID index `gid_index` (-1: the
    /// last one). Errors name the flag that selects the missing piece.
    pub fn open(name: &str, port: u8, gid_index: i32) -> Result<IbvDevice, VerbsError> {
        let mut n = 0i32;
        // SAFETY: `n` is a valid out-pointer; the list is freed below.
        let list = unsafe { ffi::ibv_get_device_list(&mut n) };
        if list.is_null() {
            return Err(VerbsError::NoDevice(format!(
                "ibv_get_device_list failed: {}",
                io::Error::last_os_error()
            )));
        }
        let mut chosen = None;
        let mut seen = Vec::new();
        for i in 0..usize::try_from(n).unwrap_or(0) {
            // SAFETY: the list holds `n` valid device pointers.
            let dev = unsafe { *list.add(i) };
            // SAFETY: `dev` is a valid device; the name is a NUL-terminated string it owns.
            let dev_name = unsafe { CStr::from_ptr(ffi::ibv_get_device_name(dev)) }
                .to_string_lossy()
                .into_owned();
            if chosen.is_none() && (name.is_empty() || dev_name == name) {
                chosen = Some((dev, dev_name.clone()));
            }
            seen.push(dev_name);
        }
        let ctx = chosen.map(|(dev, dev_name)| {
            // SAFETY: `dev` comes from the live list.
            (unsafe { ffi::ibv_open_device(dev) }, dev_name)
        });
        // SAFETY: the list came from ibv_get_device_list; opened contexts stay valid after it is
        // freed.
        unsafe { ffi::ibv_free_device_list(list) };
        let Some((ctx, dev_name)) = ctx else {
            return Err(VerbsError::NoDevice(if name.is_empty() {
                "no RDMA device present".into()
            } else {
                format!("--rdma_device={name} not found (devices: {seen:?})")
            }));
        };
        if ctx.is_null() {
            return Err(last_error(&format!("ibv_open_device({dev_name})")));
        }
        // From here `dev` owns `ctx` and closes it on every error path.
        let mut dev = Context {
            ctx,
            name: dev_name,
            port,
            gid_index,
            address: PortAddress::default(),
            active_mtu: ffi::IBV_MTU_1024,
        };
        let mut attr = ffi::ibv_port_attr::default();
        // SAFETY: valid context and out-pointer; ibv_query_port takes the compat struct, which
        // has the same leading layout.
        let rc = unsafe {
            ffi::ibv_query_port(ctx, port, (&mut attr as *mut ffi::ibv_port_attr).cast())
        };
        check(rc, &format!("ibv_query_port(--rdma_port={port})"))?;
        if attr.state != ffi::ibv_port_state::IBV_PORT_ACTIVE {
            return Err(VerbsError::NoDevice(format!(
                "--rdma_port={port} of {} is not active (state {})",
                dev.name, attr.state
            )));
        }
        let index = if gid_index < 0 {
            attr.gid_tbl_len - 1
        } else {
            gid_index
        };
        if index < 0 || index >= attr.gid_tbl_len {
            return Err(VerbsError::InvalidArgument(format!(
                "--rdma_gid_index={gid_index} outside the GID table of {} port {port} ({} entries)",
                dev.name, attr.gid_tbl_len
            )));
        }
        let mut gid = ffi::ibv_gid { raw: [0; 16] };
        // SAFETY: valid context and out-pointer.
        let rc = unsafe { ffi::ibv_query_gid(ctx, port, index, &mut gid) };
        check(rc, &format!("ibv_query_gid(--rdma_gid_index={index})"))?;
        dev.gid_index = index;
        dev.active_mtu = attr.active_mtu;
        dev.address = PortAddress {
            // SAFETY: every bit pattern of the union is a valid byte array.
            gid: unsafe { gid.raw },
            lid: attr.lid,
        };
        Ok(IbvDevice(Arc::new(dev)))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: `ctx` was opened by us; everything created from it holds an Arc of the device,
        // so nothing uses it any more.
        unsafe { ffi::ibv_close_device(self.ctx) };
    }
}

impl Device for IbvDevice {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Ibverbs
    }

    fn port_address(&self) -> PortAddress {
        self.0.address
    }

    fn alloc_pd(&self) -> Result<Arc<dyn ProtectionDomain>, VerbsError> {
        // SAFETY: valid context.
        let pd = unsafe { ffi::ibv_alloc_pd(self.0.ctx) };
        if pd.is_null() {
            return Err(last_error("ibv_alloc_pd"));
        }
        Ok(Arc::new(IbvPd(Arc::new(PdInner {
            dev: self.0.clone(),
            pd,
        }))))
    }

    fn create_cq(&self, capacity: u32) -> Result<Arc<dyn CompletionQueue>, VerbsError> {
        let cqe = i32::try_from(capacity)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| VerbsError::InvalidArgument(format!("cq capacity {capacity}")))?;
        // SAFETY: valid context.
        let channel = unsafe { ffi::ibv_create_comp_channel(self.0.ctx) };
        if channel.is_null() {
            return Err(last_error("ibv_create_comp_channel"));
        }
        // SAFETY: `channel` is valid; its fd is owned by the channel.
        let fd = unsafe { (*channel).fd };
        // SAFETY: plain fcntl calls on a valid fd.
        let nonblock = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
        };
        if !nonblock {
            let e = last_error("fcntl(O_NONBLOCK) on the completion channel");
            // SAFETY: no queue uses the channel yet.
            unsafe { ffi::ibv_destroy_comp_channel(channel) };
            return Err(e);
        }
        // SAFETY: valid context and channel.
        let cq = unsafe { ffi::ibv_create_cq(self.0.ctx, cqe, ptr::null_mut(), channel, 0) };
        if cq.is_null() {
            let e = last_error("ibv_create_cq");
            // SAFETY: no queue uses the channel.
            unsafe { ffi::ibv_destroy_comp_channel(channel) };
            return Err(e);
        }
        Ok(Arc::new(IbvCq {
            _dev: self.0.clone(),
            channel,
            cq,
        }))
    }
}

struct PdInner {
    dev: Arc<Context>,
    pd: *mut ffi::ibv_pd,
}

// SAFETY: protection domains may be used from any thread; freed only in Drop.
unsafe impl Send for PdInner {}
// SAFETY: as above.
unsafe impl Sync for PdInner {}

impl Drop for PdInner {
    fn drop(&mut self) {
        // SAFETY: every region and queue pair of the domain holds an Arc of it: none is left.
        unsafe { ffi::ibv_dealloc_pd(self.pd) };
    }
}

/// A protection domain.
pub struct IbvPd(Arc<PdInner>);

impl fmt::Debug for IbvPd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IbvPd({})", self.0.dev.name)
    }
}

impl ProtectionDomain for IbvPd {
    unsafe fn register(
        &self,
        addr: *mut u8,
        len: usize,
        access: Access,
    ) -> Result<Box<dyn MemoryRegion>, VerbsError> {
        if addr.is_null() || len == 0 {
            return Err(VerbsError::InvalidArgument(format!(
                "cannot register {len} bytes at {addr:p}"
            )));
        }
        // Access bits are the verbs' own values (LOCAL_WRITE 1, REMOTE_WRITE 2, REMOTE_READ 4).
        let flags = access.bits() as i32;
        // SAFETY: the caller guarantees the memory stays valid until the region is dropped.
        let mr = unsafe { ffi::ibv_reg_mr(self.0.pd, addr.cast(), len, flags) };
        if mr.is_null() {
            return Err(last_error("ibv_reg_mr"));
        }
        Ok(Box::new(IbvMr {
            _pd: self.0.clone(),
            mr,
        }))
    }

    fn create_qp(&self, init: QpInit) -> Result<Arc<dyn QueuePair>, VerbsError> {
        let send_cq = cq_ptr(&init.send_cq, "send_cq")?;
        let recv_cq = cq_ptr(&init.recv_cq, "recv_cq")?;
        let mut attr = ffi::ibv_qp_init_attr {
            send_cq,
            recv_cq,
            cap: ffi::ibv_qp_cap {
                max_send_wr: init.max_send_wr,
                max_recv_wr: init.max_recv_wr,
                max_send_sge: init.max_sge,
                max_recv_sge: init.max_sge,
                max_inline_data: 0,
            },
            qp_type: ffi::ibv_qp_type::IBV_QPT_RC,
            sq_sig_all: 0,
            ..Default::default()
        };
        // SAFETY: valid domain, queues and attributes.
        let qp = unsafe { ffi::ibv_create_qp(self.0.pd, &mut attr) };
        if qp.is_null() {
            return Err(last_error("ibv_create_qp"));
        }
        let q = IbvQp {
            pd: self.0.clone(),
            qp,
            _cqs: [init.send_cq.clone(), init.recv_cq.clone()],
            retry: init.retry,
            state: Mutex::new(QpState::Init),
        };
        let mut a = ffi::ibv_qp_attr {
            qp_state: ffi::ibv_qp_state::IBV_QPS_INIT,
            pkey_index: 0,
            port_num: self.0.dev.port,
            qp_access_flags: (Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ)
                .bits(),
            ..Default::default()
        };
        let mask = ffi::ibv_qp_attr_mask::IBV_QP_STATE
            | ffi::ibv_qp_attr_mask::IBV_QP_PKEY_INDEX
            | ffi::ibv_qp_attr_mask::IBV_QP_PORT
            | ffi::ibv_qp_attr_mask::IBV_QP_ACCESS_FLAGS;
        q.modify(&mut a, mask, "INIT")?;
        Ok(Arc::new(q))
    }
}

fn cq_ptr(cq: &Arc<dyn CompletionQueue>, which: &str) -> Result<*mut ffi::ibv_cq, VerbsError> {
    cq.as_any()
        .downcast_ref::<IbvCq>()
        .map(|c| c.cq)
        .ok_or_else(|| VerbsError::InvalidArgument(format!("{which} is not an ibverbs queue")))
}

/// A registered memory region.
pub struct IbvMr {
    _pd: Arc<PdInner>,
    mr: *mut ffi::ibv_mr,
}

// SAFETY: the region's fields are immutable after registration; freed only in Drop.
unsafe impl Send for IbvMr {}
// SAFETY: as above.
unsafe impl Sync for IbvMr {}

impl fmt::Debug for IbvMr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IbvMr(lkey={:#x})", self.lkey())
    }
}

impl MemoryRegion for IbvMr {
    fn addr(&self) -> u64 {
        // SAFETY: `mr` is valid until Drop.
        unsafe { (*self.mr).addr as u64 }
    }
    fn len(&self) -> usize {
        // SAFETY: as above.
        unsafe { (*self.mr).length }
    }
    fn lkey(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.mr).lkey }
    }
    fn rkey(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.mr).rkey }
    }
}

impl Drop for IbvMr {
    fn drop(&mut self) {
        // SAFETY: registered by us, deregistered once.
        unsafe { ffi::ibv_dereg_mr(self.mr) };
    }
}

/// A completion queue with its completion channel.
pub struct IbvCq {
    _dev: Arc<Context>,
    channel: *mut ffi::ibv_comp_channel,
    cq: *mut ffi::ibv_cq,
}

// SAFETY: completion queues may be polled and armed from any thread (the provider locks); freed
// only in Drop.
unsafe impl Send for IbvCq {}
// SAFETY: as above.
unsafe impl Sync for IbvCq {}

impl fmt::Debug for IbvCq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IbvCq(fd={})", self.fd())
    }
}

fn map_status(s: ffi::ibv_wc_status::Type) -> WcStatus {
    use ffi::ibv_wc_status as st;
    match s {
        st::IBV_WC_SUCCESS => WcStatus::Success,
        st::IBV_WC_LOC_LEN_ERR => WcStatus::LocalLengthError,
        st::IBV_WC_LOC_PROT_ERR => WcStatus::LocalProtectionError,
        st::IBV_WC_WR_FLUSH_ERR => WcStatus::WrFlushError,
        st::IBV_WC_LOC_ACCESS_ERR => WcStatus::LocalAccessError,
        st::IBV_WC_REM_INV_REQ_ERR => WcStatus::RemoteInvalidRequest,
        st::IBV_WC_REM_ACCESS_ERR => WcStatus::RemoteAccessError,
        st::IBV_WC_RETRY_EXC_ERR => WcStatus::RetryExceeded,
        st::IBV_WC_RNR_RETRY_EXC_ERR => WcStatus::RnrRetryExceeded,
        _ => WcStatus::GeneralError,
    }
}

fn map_opcode(o: ffi::ibv_wc_opcode::Type) -> WcOpcode {
    use ffi::ibv_wc_opcode as op;
    match o {
        op::IBV_WC_RDMA_WRITE => WcOpcode::RdmaWrite,
        op::IBV_WC_RECV => WcOpcode::Recv,
        op::IBV_WC_RECV_RDMA_WITH_IMM => WcOpcode::RecvRdmaWithImm,
        // Sends, and failed completions (whose opcode the hardware leaves undefined).
        _ => WcOpcode::Send,
    }
}

impl CompletionQueue for IbvCq {
    fn poll(&self, out: &mut Vec<WorkCompletion>, max: usize) -> Result<usize, VerbsError> {
        const BATCH: usize = 32;
        let mut done = 0;
        while done < max {
            // SAFETY: ibv_wc is plain data; all-zero is a valid value.
            let mut wcs: [ffi::ibv_wc; BATCH] = unsafe { std::mem::zeroed() };
            let want = (max - done).min(BATCH) as i32;
            // SAFETY: `cq` is valid; its context's ops table is filled by the provider.
            let poll = unsafe { (*(*self.cq).context).ops.poll_cq }
                .ok_or_else(|| VerbsError::InvalidState("provider has no poll_cq".into()))?;
            // SAFETY: `wcs` has room for `want` entries.
            let n = unsafe { poll(self.cq, want, wcs.as_mut_ptr()) };
            if n < 0 {
                return Err(last_error("ibv_poll_cq"));
            }
            for wc in &wcs[..n as usize] {
                let status = wc.error().map_or(WcStatus::Success, |(s, _)| map_status(s));
                out.push(WorkCompletion {
                    wr_id: wc.wr_id(),
                    status,
                    opcode: map_opcode(wc.opcode()),
                    byte_len: wc.len() as u32,
                    imm_data: wc.imm_data().map(u32::from_be),
                    qp_num: wc.qp_num,
                });
            }
            done += n as usize;
            if (n as usize) < want as usize {
                break;
            }
        }
        Ok(done)
    }

    fn fd(&self) -> RawFd {
        // SAFETY: `channel` is valid until Drop.
        unsafe { (*self.channel).fd }
    }

    fn arm(&self, solicited_only: bool) -> Result<(), VerbsError> {
        // SAFETY: as in `poll`.
        let notify = unsafe { (*(*self.cq).context).ops.req_notify_cq }
            .ok_or_else(|| VerbsError::InvalidState("provider has no req_notify_cq".into()))?;
        // SAFETY: valid queue.
        check(
            unsafe { notify(self.cq, i32::from(solicited_only)) },
            "ibv_req_notify_cq",
        )
    }

    fn ack_events(&self) -> Result<u32, VerbsError> {
        let mut n = 0u32;
        loop {
            let mut cq = ptr::null_mut();
            let mut ctx = ptr::null_mut();
            // SAFETY: valid channel and out-pointers; the fd is non-blocking, so this returns -1
            // (EAGAIN) when no event is pending.
            if unsafe { ffi::ibv_get_cq_event(self.channel, &mut cq, &mut ctx) } != 0 {
                break;
            }
            n += 1;
        }
        if n > 0 {
            // SAFETY: acknowledges exactly the events taken above.
            unsafe { ffi::ibv_ack_cq_events(self.cq, n) };
        }
        Ok(n)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for IbvCq {
    fn drop(&mut self) {
        // SAFETY: every queue pair using this queue holds an Arc of it: none is left; all events
        // were acknowledged in `ack_events`.
        unsafe {
            ffi::ibv_destroy_cq(self.cq);
            ffi::ibv_destroy_comp_channel(self.channel);
        }
    }
}

/// A reliable-connected queue pair.
pub struct IbvQp {
    pd: Arc<PdInner>,
    qp: *mut ffi::ibv_qp,
    _cqs: [Arc<dyn CompletionQueue>; 2],
    retry: RetryConfig,
    state: Mutex<QpState>,
}

// SAFETY: posting and modifying are thread-safe verbs; freed only in Drop.
unsafe impl Send for IbvQp {}
// SAFETY: as above.
unsafe impl Sync for IbvQp {}

impl fmt::Debug for IbvQp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IbvQp({})", self.qp_num())
    }
}

impl IbvQp {
    fn modify(
        &self,
        attr: &mut ffi::ibv_qp_attr,
        mask: ffi::ibv_qp_attr_mask,
        to: &str,
    ) -> Result<(), VerbsError> {
        // SAFETY: valid queue pair and attributes.
        let rc = unsafe { ffi::ibv_modify_qp(self.qp, attr, mask.0 as i32) };
        check(rc, &format!("ibv_modify_qp to {to}"))
    }
}

impl Drop for IbvQp {
    fn drop(&mut self) {
        // SAFETY: created by us, destroyed once.
        unsafe { ffi::ibv_destroy_qp(self.qp) };
    }
}

impl QueuePair for IbvQp {
    fn qp_num(&self) -> u32 {
        // SAFETY: valid until Drop.
        unsafe { (*self.qp).qp_num }
    }

    fn address(&self) -> QpAddress {
        QpAddress {
            port: self.pd.dev.address,
            qp_num: self.qp_num(),
        }
    }

    fn state(&self) -> QpState {
        *self.state.lock()
    }

    fn connect(&self, remote: &QpAddress) -> Result<(), VerbsError> {
        let mut state = self.state.lock();
        if *state != QpState::Init {
            return Err(VerbsError::InvalidState(format!(
                "connect in state {:?}",
                *state
            )));
        }
        let dev = &self.pd.dev;
        let mut a = ffi::ibv_qp_attr {
            qp_state: ffi::ibv_qp_state::IBV_QPS_RTR,
            path_mtu: dev.active_mtu,
            dest_qp_num: remote.qp_num,
            rq_psn: 0,
            max_dest_rd_atomic: 1,
            min_rnr_timer: MIN_RNR_TIMER,
            ..Default::default()
        };
        a.ah_attr.is_global = 1;
        a.ah_attr.grh.dgid = ffi::ibv_gid {
            raw: remote.port.gid,
        };
        a.ah_attr.grh.sgid_index = dev.gid_index as u8;
        a.ah_attr.grh.hop_limit = 0xff;
        a.ah_attr.dlid = remote.port.lid;
        a.ah_attr.port_num = dev.port;
        use ffi::ibv_qp_attr_mask as m;
        self.modify(
            &mut a,
            m::IBV_QP_STATE
                | m::IBV_QP_AV
                | m::IBV_QP_PATH_MTU
                | m::IBV_QP_DEST_QPN
                | m::IBV_QP_RQ_PSN
                | m::IBV_QP_MAX_DEST_RD_ATOMIC
                | m::IBV_QP_MIN_RNR_TIMER,
            "RTR",
        )?;
        let mut a = ffi::ibv_qp_attr {
            qp_state: ffi::ibv_qp_state::IBV_QPS_RTS,
            timeout: QP_TIMEOUT,
            retry_cnt: QP_RETRY_CNT,
            rnr_retry: self.retry.rnr_retry.min(7),
            sq_psn: 0,
            max_rd_atomic: 1,
            ..Default::default()
        };
        self.modify(
            &mut a,
            m::IBV_QP_STATE
                | m::IBV_QP_TIMEOUT
                | m::IBV_QP_RETRY_CNT
                | m::IBV_QP_RNR_RETRY
                | m::IBV_QP_SQ_PSN
                | m::IBV_QP_MAX_QP_RD_ATOMIC,
            "RTS",
        )?;
        *state = QpState::ReadyToSend;
        Ok(())
    }

    fn post_send(&self, wr: &SendWr) -> Result<(), VerbsError> {
        let mut sges: Vec<ffi::ibv_sge> = wr
            .sg_list
            .iter()
            .map(|s| ffi::ibv_sge {
                addr: s.addr,
                length: s.length,
                lkey: s.lkey,
            })
            .collect();
        let mut w = ffi::ibv_send_wr {
            wr_id: wr.wr_id,
            sg_list: sges.as_mut_ptr(),
            num_sge: sges.len() as i32,
            ..Default::default()
        };
        let mut flags = ffi::ibv_send_flags(0);
        if wr.signaled {
            flags |= ffi::ibv_send_flags::IBV_SEND_SIGNALED;
        }
        if wr.solicited {
            flags |= ffi::ibv_send_flags::IBV_SEND_SOLICITED;
        }
        w.send_flags = flags.0;
        use ffi::ibv_wr_opcode as op;
        let (opcode, imm, rdma) = match wr.op {
            SendOp::Send => (op::IBV_WR_SEND, None, None),
            SendOp::SendWithImm(imm) => (op::IBV_WR_SEND_WITH_IMM, Some(imm), None),
            SendOp::RdmaWrite { remote_addr, rkey } => {
                (op::IBV_WR_RDMA_WRITE, None, Some((remote_addr, rkey)))
            }
            SendOp::RdmaWriteWithImm {
                remote_addr,
                rkey,
                imm,
            } => (
                op::IBV_WR_RDMA_WRITE_WITH_IMM,
                Some(imm),
                Some((remote_addr, rkey)),
            ),
        };
        w.opcode = opcode;
        if let Some(imm) = imm {
            w.__bindgen_anon_1.imm_data = imm.to_be();
        }
        if let Some((remote_addr, rkey)) = rdma {
            w.wr.rdma = ffi::ibv_send_wr__bindgen_ty_2__bindgen_ty_1 { remote_addr, rkey };
        }
        // SAFETY: valid queue pair; the provider's ops table is filled at open.
        let post = unsafe { (*(*self.qp).context).ops.post_send }
            .ok_or_else(|| VerbsError::InvalidState("provider has no post_send".into()))?;
        let mut bad = ptr::null_mut();
        // SAFETY: `w` and `sges` live across the call (the provider copies them into the queue).
        check(unsafe { post(self.qp, &mut w, &mut bad) }, "ibv_post_send")
    }

    fn post_recv(&self, wr: &RecvWr) -> Result<(), VerbsError> {
        let mut sges: Vec<ffi::ibv_sge> = wr
            .sg_list
            .iter()
            .map(|s| ffi::ibv_sge {
                addr: s.addr,
                length: s.length,
                lkey: s.lkey,
            })
            .collect();
        let mut w = ffi::ibv_recv_wr {
            wr_id: wr.wr_id,
            next: ptr::null_mut(),
            sg_list: sges.as_mut_ptr(),
            num_sge: sges.len() as i32,
        };
        // SAFETY: as in `post_send`.
        let post = unsafe { (*(*self.qp).context).ops.post_recv }
            .ok_or_else(|| VerbsError::InvalidState("provider has no post_recv".into()))?;
        let mut bad = ptr::null_mut();
        // SAFETY: `w` and `sges` live across the call.
        check(unsafe { post(self.qp, &mut w, &mut bad) }, "ibv_post_recv")
    }

    fn set_error(&self) {
        let mut a = ffi::ibv_qp_attr {
            qp_state: ffi::ibv_qp_state::IBV_QPS_ERR,
            ..Default::default()
        };
        if self
            .modify(&mut a, ffi::ibv_qp_attr_mask::IBV_QP_STATE, "ERR")
            .is_ok()
        {
            *self.state.lock() = QpState::Error;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs everywhere: without hardware, opening fails with a clear error instead of a panic.
    /// With `SPINDLE_RDMA_TEST_DEVICE=<name>` (a machine with a NIC) it opens that device and
    /// brings a queue pair up against itself (loopback).
    #[test]
    fn open_reports_missing_hardware_or_works() {
        let Ok(name) = std::env::var("SPINDLE_RDMA_TEST_DEVICE") else {
            match IbvDevice::open("", 1, -1) {
                Err(e) => assert!(!e.to_string().is_empty()),
                Ok(dev) => assert_eq!(dev.kind(), BackendKind::Ibverbs),
            }
            let e = IbvDevice::open("no-such-device-xyz", 1, -1).unwrap_err();
            assert!(matches!(e, VerbsError::NoDevice(_)), "{e}");
            return;
        };
        let dev = IbvDevice::open(&name, 1, -1).unwrap();
        let pd = dev.alloc_pd().unwrap();
        let cq = dev.create_cq(64).unwrap();
        let init = QpInit {
            send_cq: cq.clone(),
            recv_cq: cq.clone(),
            max_send_wr: 16,
            max_recv_wr: 16,
            max_sge: 1,
            retry: RetryConfig::default(),
        };
        let a = pd.create_qp(init.clone()).unwrap();
        let b = pd.create_qp(init).unwrap();
        a.connect(&b.address()).unwrap();
        b.connect(&a.address()).unwrap();
        assert_eq!(a.state(), QpState::ReadyToSend);
    }
}
