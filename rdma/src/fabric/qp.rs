//! The fabric's reliable-connected queue pair.
//!
//! # Threads and streams
//!
//! A connected pair uses two Unix streams, one per direction: `connect` dials the peer device
//! and carries this side's requests (the *outgoing* stream); the peer's `connect` arrives through
//! this device's acceptor as the *incoming* stream. Per queue pair:
//! - the **responder** thread reads requests from the incoming stream, places them (posted
//!   receive buffers, registered memory), pushes receive completions and answers each request
//!   with one response byte;
//! - the **acknowledger** thread reads those response bytes from the outgoing stream and
//!   completes this side's sends in order.
//!
//! # Invariants
//!
//! - Sends are written to the outgoing stream in posting order (the `writer` lock covers both
//!   the queueing of the pending entry and the write), and responses come back in that order,
//!   so completions are in posting order; receives are consumed oldest first.
//! - `writer` is never taken while holding `shared`, and blocking socket writes hold only
//!   `writer`: the responder and acknowledger, which need `shared`, never wait for a blocked
//!   writer, so two queue pairs writing to each other cannot deadlock.
//! - The transition to [`QpState::Error`] happens once, under `shared`, and takes every
//!   outstanding request with it; those are then completed with flush status (the first send
//!   with the failure's status when there is one). Nothing is queued after it.

use super::cq::FabricCq;
use super::device::{socket_name, DeviceInner};
use super::wire::{op, ConnectHeader, ConnectReply, RequestHeader, Response, FLAG_SOLICITED};
use crate::verbs::{
    CompletionQueue, PortAddress, QpAddress, QpInit, QpState, QueuePair, RecvWr, RetryConfig,
    SendOp, SendWr, VerbsError, WcOpcode, WcStatus, WorkCompletion,
};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::Arc;

/// `rnr_retry` value meaning "retry forever".
const RNR_INFINITE: u8 = 7;

/// A send waiting for its response.
#[derive(Debug, Clone, Copy)]
struct Pending {
    wr_id: u64,
    opcode: WcOpcode,
    byte_len: u32,
    signaled: bool,
}

#[derive(Debug)]
struct Shared {
    state: QpState,
    recvs: VecDeque<RecvWr>,
    sends: VecDeque<Pending>,
    remote: Option<QpAddress>,
    /// Clones of the streams, to shut them down on error.
    incoming: Option<UnixStream>,
    outgoing: Option<UnixStream>,
}

/// The queue pair's state, shared with its threads.
#[derive(Debug)]
pub(crate) struct QpInner {
    dev: Arc<DeviceInner>,
    qpn: u32,
    pd: u32,
    send_cq: Arc<dyn CompletionQueue>,
    recv_cq: Arc<dyn CompletionQueue>,
    max_send_wr: usize,
    max_recv_wr: usize,
    max_sge: usize,
    retry: RetryConfig,
    shared: Mutex<Shared>,
    /// Signalled when a receive is posted or the pair fails (RNR waits).
    recv_posted: Condvar,
    /// The outgoing stream's write side.
    writer: Mutex<Option<UnixStream>>,
}

fn push(cq: &Arc<dyn CompletionQueue>, wc: WorkCompletion, solicited: bool) {
    // `create` checked both queues are fabric queues.
    if let Some(cq) = cq.as_any().downcast_ref::<FabricCq>() {
        cq.push(wc, solicited);
    }
}

impl QpInner {
    fn wc(&self, wr_id: u64, status: WcStatus, opcode: WcOpcode, byte_len: u32) -> WorkCompletion {
        WorkCompletion {
            wr_id,
            status,
            opcode,
            byte_len,
            imm_data: None,
            qp_num: self.qpn,
        }
    }

    fn state(&self) -> QpState {
        self.shared.lock().state
    }

    /// Moves to the error state (once) and flushes everything outstanding; the first
    /// outstanding send completes with `first_send` if given.
    fn fail(&self, first_send: Option<WcStatus>) {
        let (sends, recvs, streams) = {
            let mut s = self.shared.lock();
            if s.state == QpState::Error {
                return;
            }
            s.state = QpState::Error;
            (
                std::mem::take(&mut s.sends),
                std::mem::take(&mut s.recvs),
                [s.incoming.take(), s.outgoing.take()],
            )
        };
        self.recv_posted.notify_all();
        for (i, p) in sends.into_iter().enumerate() {
            let status = match (i, first_send) {
                (0, Some(st)) => st,
                _ => WcStatus::WrFlushError,
            };
            push(
                &self.send_cq,
                self.wc(p.wr_id, status, p.opcode, p.byte_len),
                false,
            );
        }
        for r in recvs {
            push(
                &self.recv_cq,
                self.wc(r.wr_id, WcStatus::WrFlushError, WcOpcode::Recv, 0),
                false,
            );
        }
        for s in streams.into_iter().flatten() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Takes a stream a peer opened to this pair (from the device's acceptor).
    pub(crate) fn attach_incoming(qp: &Arc<QpInner>, mut stream: UnixStream) -> io::Result<()> {
        let clone = stream.try_clone()?;
        let accepted = {
            let mut s = qp.shared.lock();
            if s.state == QpState::Error || s.incoming.is_some() {
                false
            } else {
                s.incoming = Some(clone);
                true
            }
        };
        if !accepted {
            return stream.write_all(&[ConnectReply::Refused as u8]);
        }
        stream.write_all(&[ConnectReply::Accepted as u8])?;
        let me = qp.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("spindle-fabric-qp{}-rx", qp.qpn))
            .spawn(move || me.respond_loop(stream));
        if spawned.is_err() {
            qp.fail(None);
        }
        Ok(())
    }

    /// Waits for a posted receive through the RNR retries: `Ok(Some)` a receive, `Ok(None)` none
    /// came (answer RNR NAK), `Err(())` the pair failed meanwhile (answer nothing).
    fn take_recv(&self) -> Result<Option<RecvWr>, ()> {
        let mut s = self.shared.lock();
        let mut tries: u32 = 0;
        loop {
            if s.state == QpState::Error {
                return Err(());
            }
            if let Some(r) = s.recvs.pop_front() {
                return Ok(Some(r));
            }
            if self.retry.rnr_retry != RNR_INFINITE && tries > u32::from(self.retry.rnr_retry) {
                return Ok(None);
            }
            self.recv_posted.wait_for(&mut s, self.retry.rnr_timer);
            tries += 1;
        }
    }

    /// Copies `data` into the receive's buffers; the status of the receive.
    fn scatter(&self, recv: &RecvWr, data: &[u8]) -> WcStatus {
        let placed = self
            .dev
            .with_local(&recv.sg_list, self.pd, true, |capacity| {
                if capacity < data.len() as u64 {
                    return false;
                }
                let mut at = 0usize;
                for sge in &recv.sg_list {
                    let n = (sge.length as usize).min(data.len() - at);
                    if n == 0 {
                        break;
                    }
                    // SAFETY: `with_local` checked that [addr, addr+length) lies in a region
                    // registered with local write access in this protection domain, and holds the
                    // key table's read lock, so the region cannot be deregistered during the copy;
                    // the registration contract keeps that memory valid until deregistration.
                    // `data[at..at+n]` is in bounds since n <= data.len() - at.
                    unsafe {
                        std::ptr::copy_nonoverlapping(data.as_ptr().add(at), sge.addr as *mut u8, n)
                    };
                    at += n;
                }
                true
            });
        match placed {
            Ok(true) => WcStatus::Success,
            Ok(false) => WcStatus::LocalLengthError,
            Err(_) => WcStatus::LocalProtectionError,
        }
    }

    /// Handles one request; `Err(())` ends the connection (the pair failed).
    fn respond(&self, h: &RequestHeader, data: &[u8], out: &mut UnixStream) -> Result<(), ()> {
        let solicited = h.flags & FLAG_SOLICITED != 0;
        let reply = |out: &mut UnixStream, r: Response| out.write_all(&[r as u8]).map_err(|_| ());
        match h.op {
            op::SEND | op::SEND_IMM => {
                let Some(recv) = self.take_recv()? else {
                    return reply(out, Response::RnrNak);
                };
                let status = self.scatter(&recv, data);
                let mut wc = self.wc(recv.wr_id, status, WcOpcode::Recv, data.len() as u32);
                if h.op == op::SEND_IMM {
                    wc.imm_data = Some(h.imm);
                }
                if status.is_ok() {
                    // The transport ACK leaves before the completion is visible (as hardware
                    // acknowledges on placement): a receiver that exits right after its last
                    // completion does not turn the sender's last send into a failure.
                    let acked = reply(out, Response::Ack);
                    push(&self.recv_cq, wc, solicited);
                    acked
                } else {
                    push(&self.recv_cq, wc, solicited);
                    let _ = reply(out, Response::InvalidRequest);
                    Err(())
                }
            }
            _ => {
                let with_imm = h.op == op::WRITE_IMM;
                let recv = if with_imm {
                    match self.take_recv()? {
                        Some(r) => Some(r),
                        None => return reply(out, Response::RnrNak),
                    }
                } else {
                    None
                };
                let written =
                    self.dev
                        .with_remote(h.rkey, h.remote_addr, data.len() as u64, self.pd, || {
                            // SAFETY: `with_remote` checked that the whole range lies in a region of
                            // this protection domain registered with remote write access, and holds
                            // the key table's read lock for the copy (no deregistration meanwhile);
                            // the registration contract keeps the memory valid until then.
                            unsafe {
                                std::ptr::copy_nonoverlapping(
                                    data.as_ptr(),
                                    h.remote_addr as *mut u8,
                                    data.len(),
                                )
                            }
                        });
                if written.is_none() {
                    if let Some(r) = recv {
                        push(
                            &self.recv_cq,
                            self.wc(
                                r.wr_id,
                                WcStatus::LocalAccessError,
                                WcOpcode::RecvRdmaWithImm,
                                0,
                            ),
                            solicited,
                        );
                    }
                    let _ = reply(out, Response::RemoteAccess);
                    return Err(());
                }
                // ACK first, then the completion (see the send case).
                let acked = reply(out, Response::Ack);
                if let Some(r) = recv {
                    let mut wc = self.wc(
                        r.wr_id,
                        WcStatus::Success,
                        WcOpcode::RecvRdmaWithImm,
                        data.len() as u32,
                    );
                    wc.imm_data = Some(h.imm);
                    push(&self.recv_cq, wc, solicited);
                }
                acked
            }
        }
    }

    fn respond_loop(self: Arc<Self>, mut stream: UnixStream) {
        let mut data = Vec::new();
        // Ends when the peer goes away (or sends garbage): a broken connection.
        while let Ok(Some(h)) = RequestHeader::read_from(&mut stream) {
            data.clear();
            // Grows as bytes arrive: nothing is allocated for a length not yet received.
            match (&mut stream).take(u64::from(h.len)).read_to_end(&mut data) {
                Ok(n) if n == h.len as usize => {}
                _ => break,
            }
            if self.respond(&h, &data, &mut stream).is_err() {
                // This side refused a request (and told the requester): the pair fails here.
                self.fail(None);
                return;
            }
        }
        // The peer closed its requests' stream. A failing peer closes both streams, so if sends
        // are outstanding the acknowledger will read their last responses and then the end of
        // stream, and fail the pair with the right statuses; failing here first would race it.
        if self.shared.lock().sends.is_empty() {
            self.fail(Some(WcStatus::RetryExceeded));
        }
    }

    fn ack_loop(self: Arc<Self>, mut stream: UnixStream) {
        let mut byte = [0u8; 1];
        loop {
            if stream.read_exact(&mut byte).is_err() {
                // No answer will come: the peer is gone.
                self.fail(Some(WcStatus::RetryExceeded));
                return;
            }
            let response = Response::from_byte(byte[0]);
            let Some(p) = self.shared.lock().sends.pop_front() else {
                // A response nothing asked for: the peer is confused.
                self.fail(None);
                return;
            };
            let status = response.status();
            if status.is_ok() {
                if p.signaled {
                    push(
                        &self.send_cq,
                        self.wc(p.wr_id, status, p.opcode, p.byte_len),
                        false,
                    );
                }
            } else {
                push(
                    &self.send_cq,
                    self.wc(p.wr_id, status, p.opcode, p.byte_len),
                    false,
                );
                self.fail(None);
                return;
            }
        }
    }
}

/// A fabric queue pair (dropping it fails the connection: the peer sees a broken peer).
#[derive(Debug)]
pub struct FabricQp {
    inner: Arc<QpInner>,
}

impl FabricQp {
    pub(crate) fn create(
        dev: Arc<DeviceInner>,
        pd: u32,
        init: QpInit,
    ) -> Result<FabricQp, VerbsError> {
        for (cq, which) in [(&init.send_cq, "send_cq"), (&init.recv_cq, "recv_cq")] {
            if cq.as_any().downcast_ref::<FabricCq>().is_none() {
                return Err(VerbsError::InvalidArgument(format!(
                    "{which} is not a software-fabric completion queue"
                )));
            }
        }
        if init.max_send_wr == 0 || init.max_recv_wr == 0 || init.max_sge == 0 {
            return Err(VerbsError::InvalidArgument(format!(
                "max_send_wr={}, max_recv_wr={}, max_sge={}: each must be at least 1",
                init.max_send_wr, init.max_recv_wr, init.max_sge
            )));
        }
        let qpn = dev.next_qpn();
        let inner = Arc::new(QpInner {
            dev: dev.clone(),
            qpn,
            pd,
            send_cq: init.send_cq,
            recv_cq: init.recv_cq,
            max_send_wr: init.max_send_wr as usize,
            max_recv_wr: init.max_recv_wr as usize,
            max_sge: init.max_sge as usize,
            retry: init.retry,
            shared: Mutex::new(Shared {
                state: QpState::Init,
                recvs: VecDeque::new(),
                sends: VecDeque::new(),
                remote: None,
                incoming: None,
                outgoing: None,
            }),
            recv_posted: Condvar::new(),
            writer: Mutex::new(None),
        });
        dev.register_qp(qpn, &inner);
        Ok(FabricQp { inner })
    }

    fn check_sges(&self, n: usize) -> Result<(), VerbsError> {
        if n > self.inner.max_sge {
            return Err(VerbsError::InvalidArgument(format!(
                "{n} scatter/gather entries, max_sge is {}",
                self.inner.max_sge
            )));
        }
        Ok(())
    }
}

impl Drop for FabricQp {
    fn drop(&mut self) {
        self.inner.dev.unregister_qp(self.inner.qpn);
        self.inner.fail(None);
    }
}

impl QueuePair for FabricQp {
    fn qp_num(&self) -> u32 {
        self.inner.qpn
    }

    fn address(&self) -> QpAddress {
        QpAddress {
            port: PortAddress {
                gid: self.inner.dev.gid(),
                lid: 0,
            },
            qp_num: self.inner.qpn,
        }
    }

    fn state(&self) -> QpState {
        self.inner.state()
    }

    fn connect(&self, remote: &QpAddress) -> Result<(), VerbsError> {
        let q = &self.inner;
        {
            let s = q.shared.lock();
            if s.state != QpState::Init || s.remote.is_some() {
                return Err(VerbsError::InvalidState(format!(
                    "connect on queue pair {} in state {:?} (connect is allowed once, from Init)",
                    q.qpn, s.state
                )));
            }
        }
        let name = socket_name(&remote.port.gid);
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        let mut stream = UnixStream::connect_addr(&addr).map_err(|e| {
            VerbsError::InvalidArgument(format!(
                "no fabric device answers at the remote GID ({name}): {e}"
            ))
        })?;
        let header = ConnectHeader {
            target_qpn: remote.qp_num,
            source: self.address(),
        };
        stream.write_all(&header.encode())?;
        let mut reply = [0u8; 1];
        stream.read_exact(&mut reply)?;
        match ConnectReply::from_byte(reply[0]) {
            ConnectReply::Accepted => {}
            ConnectReply::NoSuchQp => {
                return Err(VerbsError::InvalidArgument(format!(
                    "the remote device has no queue pair {}",
                    remote.qp_num
                )))
            }
            ConnectReply::Refused => {
                return Err(VerbsError::InvalidState(format!(
                    "remote queue pair {} already has a peer or failed",
                    remote.qp_num
                )))
            }
        }
        let for_acks = stream.try_clone()?;
        let for_shutdown = stream.try_clone()?;
        {
            let mut s = q.shared.lock();
            if s.state != QpState::Init {
                return Err(VerbsError::InvalidState(format!(
                    "queue pair {} failed while connecting",
                    q.qpn
                )));
            }
            s.remote = Some(*remote);
            s.outgoing = Some(for_shutdown);
            s.state = QpState::ReadyToSend;
        }
        *q.writer.lock() = Some(stream);
        let me = q.clone();
        std::thread::Builder::new()
            .name(format!("spindle-fabric-qp{}-ack", q.qpn))
            .spawn(move || me.ack_loop(for_acks))
            .map_err(|e| {
                q.fail(None);
                VerbsError::Io(e)
            })?;
        Ok(())
    }

    fn post_send(&self, wr: &SendWr) -> Result<(), VerbsError> {
        let q = &self.inner;
        self.check_sges(wr.sg_list.len())?;
        let mut writer = q.writer.lock();
        let payload = q
            .dev
            .with_local(&wr.sg_list, q.pd, false, |total| {
                let mut buf = Vec::with_capacity(total as usize);
                for sge in &wr.sg_list {
                    // SAFETY: `with_local` checked the range lies in a registered region of this
                    // protection domain and holds the key table's read lock during the copy; the
                    // registration contract keeps that memory valid until deregistration.
                    let part = unsafe {
                        std::slice::from_raw_parts(sge.addr as *const u8, sge.length as usize)
                    };
                    buf.extend_from_slice(part);
                }
                buf
            })
            .map_err(VerbsError::LocalProtection)?;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|n| *n <= super::wire::MAX_MESSAGE)
            .ok_or_else(|| {
                VerbsError::InvalidArgument(format!("message of {} bytes", payload.len()))
            })?;
        let (opcode, header) = match wr.op {
            SendOp::Send => (WcOpcode::Send, (op::SEND, 0, 0, 0)),
            SendOp::SendWithImm(imm) => (WcOpcode::Send, (op::SEND_IMM, imm, 0, 0)),
            SendOp::RdmaWrite { remote_addr, rkey } => {
                (WcOpcode::RdmaWrite, (op::WRITE, 0, remote_addr, rkey))
            }
            SendOp::RdmaWriteWithImm {
                remote_addr,
                rkey,
                imm,
            } => (WcOpcode::RdmaWrite, (op::WRITE_IMM, imm, remote_addr, rkey)),
        };
        {
            let mut s = q.shared.lock();
            if s.state != QpState::ReadyToSend {
                return Err(VerbsError::InvalidState(format!(
                    "post_send on queue pair {} in state {:?}",
                    q.qpn, s.state
                )));
            }
            if s.sends.len() >= q.max_send_wr {
                return Err(VerbsError::QueueFull {
                    queue: "send",
                    depth: q.max_send_wr,
                });
            }
            s.sends.push_back(Pending {
                wr_id: wr.wr_id,
                opcode,
                byte_len: len,
                signaled: wr.signaled,
            });
        }
        let h = RequestHeader {
            op: header.0,
            flags: if wr.solicited { FLAG_SOLICITED } else { 0 },
            imm: header.1,
            remote_addr: header.2,
            rkey: header.3,
            len,
        };
        if let Some(w) = writer.as_mut() {
            if h.write_with(w, &payload).is_err() {
                // The peer is gone or going. The request is queued, so it completes through the
                // acknowledger, which reads the responses still buffered (one may be the NAK
                // that made the peer leave) and then the end of stream. Closing our side makes
                // sure that end comes.
                let _ = w.shutdown(Shutdown::Write);
            }
        }
        Ok(())
    }

    fn post_recv(&self, wr: &RecvWr) -> Result<(), VerbsError> {
        let q = &self.inner;
        self.check_sges(wr.sg_list.len())?;
        q.dev
            .with_local(&wr.sg_list, q.pd, true, |_| ())
            .map_err(VerbsError::LocalProtection)?;
        {
            let mut s = q.shared.lock();
            if s.state == QpState::Error {
                return Err(VerbsError::InvalidState(format!(
                    "post_recv on queue pair {} in state Error",
                    q.qpn
                )));
            }
            if s.recvs.len() >= q.max_recv_wr {
                return Err(VerbsError::QueueFull {
                    queue: "receive",
                    depth: q.max_recv_wr,
                });
            }
            s.recvs.push_back(wr.clone());
        }
        q.recv_posted.notify_one();
        Ok(())
    }

    fn set_error(&self) {
        self.inner.fail(None);
    }
}
