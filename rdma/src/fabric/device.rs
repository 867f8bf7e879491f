//! The fabric device: a listening Unix-domain socket (abstract namespace) named after the
//! device's GID, a memory-key table and a queue-pair table; plus protection domains and memory
//! regions.

use super::cq::FabricCq;
use super::qp::{FabricQp, QpInner};
use super::wire::{ConnectHeader, ConnectReply};
use crate::verbs::{
    Access, BackendKind, CompletionQueue, Device, Gid, MemoryRegion, PortAddress, ProtectionDomain,
    QpInit, QueuePair, Sge, VerbsError,
};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::io::{self, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// First four bytes of every fabric GID.
pub const GID_PREFIX: [u8; 4] = *b"SPFB";

/// How long the acceptor waits for a caller's connect header.
const CONNECT_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Devices opened by this process so far (part of the GID, so every device is unique).
static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// The abstract socket name of the device with `gid`.
pub(crate) fn socket_name(gid: &Gid) -> String {
    let hex: String = gid.iter().map(|b| format!("{b:02x}")).collect();
    format!("spindle-fabric-{hex}")
}

/// Whether `gid` names a fabric device (rather than a hardware port).
pub fn is_fabric_gid(gid: &Gid) -> bool {
    gid[..4] == GID_PREFIX
}

/// A registered range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MrEntry {
    addr: u64,
    len: u64,
    access: Access,
    pd: u32,
}

impl MrEntry {
    fn covers(&self, addr: u64, len: u64) -> bool {
        addr >= self.addr
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= self.addr + self.len)
    }
}

/// State shared by a device and everything created from it.
#[derive(Debug)]
pub(crate) struct DeviceInner {
    name: String,
    gid: Gid,
    listener: UnixListener,
    closing: AtomicBool,
    /// Memory keys (lkey == rkey) → ranges. Readers copying into or out of a region hold the read
    /// lock for the copy, so deregistration (write lock) waits for copies in flight.
    mrs: RwLock<HashMap<u32, MrEntry>>,
    next_key: AtomicU32,
    next_qpn: AtomicU32,
    next_pd: AtomicU32,
    qps: Mutex<HashMap<u32, Weak<QpInner>>>,
}

impl DeviceInner {
    pub(crate) fn gid(&self) -> Gid {
        self.gid
    }

    pub(crate) fn next_qpn(&self) -> u32 {
        self.next_qpn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register_qp(&self, qpn: u32, qp: &Arc<QpInner>) {
        self.qps.lock().insert(qpn, Arc::downgrade(qp));
    }

    pub(crate) fn unregister_qp(&self, qpn: u32) {
        self.qps.lock().remove(&qpn);
    }

    /// Checks local entries of protection domain `pd` (with write access if `write`) and runs
    /// `f` while no region can be deregistered. Returns the total length.
    pub(crate) fn with_local<R>(
        &self,
        sges: &[Sge],
        pd: u32,
        write: bool,
        f: impl FnOnce(u64) -> R,
    ) -> Result<R, String> {
        let table = self.mrs.read();
        let mut total = 0u64;
        for (i, sge) in sges.iter().enumerate() {
            let e = table
                .get(&sge.lkey)
                .ok_or_else(|| format!("sge {i}: lkey {:#x} is not registered", sge.lkey))?;
            if e.pd != pd {
                return Err(format!(
                    "sge {i}: lkey {:#x} belongs to another protection domain",
                    sge.lkey
                ));
            }
            if write && !e.access.contains(Access::LOCAL_WRITE) {
                return Err(format!("sge {i}: region has no local write access"));
            }
            if !e.covers(sge.addr, u64::from(sge.length)) {
                return Err(format!(
                    "sge {i}: {} bytes at {:#x} outside the region of lkey {:#x}",
                    sge.length, sge.addr, sge.lkey
                ));
            }
            total += u64::from(sge.length);
        }
        Ok(f(total))
    }

    /// Checks a peer's write of `len` bytes at `addr` with `rkey` against protection domain `pd`
    /// and runs `f` while the region cannot be deregistered; `None` if refused.
    pub(crate) fn with_remote<R>(
        &self,
        rkey: u32,
        addr: u64,
        len: u64,
        pd: u32,
        f: impl FnOnce() -> R,
    ) -> Option<R> {
        let table = self.mrs.read();
        let e = table.get(&rkey)?;
        if e.pd != pd || !e.access.contains(Access::REMOTE_WRITE) || !e.covers(addr, len) {
            return None;
        }
        Some(f())
    }
}

/// A software RDMA device. Open one per process (or several: each has its own GID).
#[derive(Debug)]
pub struct FabricDevice {
    inner: Arc<DeviceInner>,
    acceptor: Option<JoinHandle<()>>,
}

impl FabricDevice {
    /// Opens a device: binds its socket and starts its acceptor thread.
    pub fn open() -> Result<Arc<FabricDevice>, VerbsError> {
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let mut gid = [0u8; 16];
        gid[..4].copy_from_slice(&GID_PREFIX);
        gid[4..8].copy_from_slice(&std::process::id().to_be_bytes());
        gid[8..12].copy_from_slice(&instance.to_be_bytes());
        let addr = SocketAddr::from_abstract_name(socket_name(&gid).as_bytes())?;
        let listener = UnixListener::bind_addr(&addr)?;
        let inner = Arc::new(DeviceInner {
            name: format!("spindle-fabric{instance}"),
            gid,
            listener,
            closing: AtomicBool::new(false),
            mrs: RwLock::new(HashMap::new()),
            // Keys and numbers start away from 0 (0 is never valid for either).
            next_key: AtomicU32::new(0x100),
            next_qpn: AtomicU32::new(0x100),
            next_pd: AtomicU32::new(1),
            qps: Mutex::new(HashMap::new()),
        });
        let for_thread = inner.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("spindle-fabric{instance}-accept"))
            .spawn(move || accept_loop(&for_thread))?;
        Ok(Arc::new(FabricDevice {
            inner,
            acceptor: Some(acceptor),
        }))
    }
}

impl Drop for FabricDevice {
    fn drop(&mut self) {
        self.inner.closing.store(true, Ordering::Release);
        // SAFETY: shutting down our own listening fd; on Linux this wakes a blocked accept().
        unsafe {
            libc::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(&self.inner.listener),
                libc::SHUT_RDWR,
            )
        };
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(dev: &Arc<DeviceInner>) {
    loop {
        match dev.listener.accept() {
            Ok((stream, _)) => {
                if dev.closing.load(Ordering::Acquire) {
                    return;
                }
                let _ = attach(dev, stream);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if dev.closing.load(Ordering::Acquire) => return,
            // Out of fds and the like: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads a caller's header and hands the stream to the queue pair it names.
fn attach(dev: &Arc<DeviceInner>, mut stream: UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(CONNECT_HEADER_TIMEOUT))?;
    let header = ConnectHeader::read_from(&mut stream)?;
    stream.set_read_timeout(None)?;
    let qp = dev
        .qps
        .lock()
        .get(&header.target_qpn)
        .and_then(Weak::upgrade);
    let Some(qp) = qp else {
        return stream.write_all(&[ConnectReply::NoSuchQp as u8]);
    };
    QpInner::attach_incoming(&qp, stream)
}

impl Device for FabricDevice {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Fabric
    }

    fn port_address(&self) -> PortAddress {
        PortAddress {
            gid: self.inner.gid,
            lid: 0,
        }
    }

    fn alloc_pd(&self) -> Result<Arc<dyn ProtectionDomain>, VerbsError> {
        Ok(Arc::new(FabricPd {
            dev: self.inner.clone(),
            id: self.inner.next_pd.fetch_add(1, Ordering::Relaxed),
        }))
    }

    fn create_cq(&self, capacity: u32) -> Result<Arc<dyn CompletionQueue>, VerbsError> {
        Ok(Arc::new(FabricCq::new(capacity)?))
    }
}

/// A fabric protection domain.
#[derive(Debug)]
pub struct FabricPd {
    dev: Arc<DeviceInner>,
    id: u32,
}

impl ProtectionDomain for FabricPd {
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
        let start = addr as u64;
        if start.checked_add(len as u64).is_none() {
            return Err(VerbsError::InvalidArgument(
                "region wraps the address space".into(),
            ));
        }
        let key = self.dev.next_key.fetch_add(1, Ordering::Relaxed);
        self.dev.mrs.write().insert(
            key,
            MrEntry {
                addr: start,
                len: len as u64,
                access,
                pd: self.id,
            },
        );
        Ok(Box::new(FabricMr {
            dev: self.dev.clone(),
            key,
            addr: start,
            len,
        }))
    }

    fn create_qp(&self, init: QpInit) -> Result<Arc<dyn QueuePair>, VerbsError> {
        Ok(Arc::new(FabricQp::create(self.dev.clone(), self.id, init)?))
    }
}

/// A fabric memory region; lkey and rkey are the same number.
#[derive(Debug)]
pub struct FabricMr {
    dev: Arc<DeviceInner>,
    key: u32,
    addr: u64,
    len: usize,
}

impl MemoryRegion for FabricMr {
    fn addr(&self) -> u64 {
        self.addr
    }
    fn len(&self) -> usize {
        self.len
    }
    fn lkey(&self) -> u32 {
        self.key
    }
    fn rkey(&self) -> u32 {
        self.key
    }
}

impl Drop for FabricMr {
    fn drop(&mut self) {
        self.dev.mrs.write().remove(&self.key);
    }
}
