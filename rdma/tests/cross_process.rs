//! Cross-process echo over the software fabric, brought up by brpc's handshake over TCP.
//!
//! The test process is the server: it listens on loopback TCP and re-executes this test binary
//! as the client (environment `SPINDLE_RDMA_CHILD_PORT`, running only `child_client`). The
//! client sends a hello (v2 and v3 in turn), the server answers with its own, the client ACKs
//! with RDMA OK; then the client sends messages with send-with-immediate over the queue pair
//! and the server echoes each back with the immediate plus one.

use spindle_rdma::fabric::FabricDevice;
use spindle_rdma::handshake::{self, ack, Hello, HelloVersion};
use spindle_rdma::verbs::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "SPINDLE_RDMA_CHILD_PORT";
const VERSION_ENV: &str = "SPINDLE_RDMA_CHILD_HELLO";
const MESSAGES: u64 = 200;
const BLOCK: usize = 1024;
const DEPTH: u32 = 32;
/// Bound on every wait (never reached when things work).
const WAIT: Duration = Duration::from_secs(20);

struct Endpoint {
    _dev: Arc<FabricDevice>,
    cq: Arc<dyn CompletionQueue>,
    qp: Arc<dyn QueuePair>,
    _mr: Box<dyn MemoryRegion>,
    lkey: u32,
    base: u64,
    _mem: Box<[u8]>,
}

impl Endpoint {
    fn new() -> Endpoint {
        let dev = FabricDevice::open().unwrap();
        let pd = dev.alloc_pd().unwrap();
        let cq = dev.create_cq(4 * DEPTH).unwrap();
        let qp = pd
            .create_qp(QpInit {
                send_cq: cq.clone(),
                recv_cq: cq.clone(),
                max_send_wr: DEPTH,
                max_recv_wr: DEPTH,
                max_sge: 1,
                retry: RetryConfig {
                    rnr_retry: 7,
                    rnr_timer: Duration::from_millis(1),
                },
            })
            .unwrap();
        // Receive blocks 0..DEPTH, then send blocks DEPTH..2*DEPTH.
        let mut mem = vec![0u8; 2 * DEPTH as usize * BLOCK].into_boxed_slice();
        // SAFETY: `mem` lives in the Endpoint and is dropped after `_mr` (field order).
        let mr = unsafe { pd.register(mem.as_mut_ptr(), mem.len(), Access::LOCAL_WRITE) }.unwrap();
        let (lkey, base) = (mr.lkey(), mr.addr());
        let ep = Endpoint {
            _dev: dev,
            cq,
            qp,
            _mr: mr,
            lkey,
            base,
            _mem: mem,
        };
        for i in 0..u64::from(DEPTH) {
            ep.post_recv(i);
        }
        ep
    }

    fn block(&self, i: u64) -> u64 {
        self.base + i * BLOCK as u64
    }

    fn post_recv(&self, slot: u64) {
        self.qp
            .post_recv(&RecvWr {
                wr_id: slot,
                sg_list: vec![Sge {
                    addr: self.block(slot),
                    length: BLOCK as u32,
                    lkey: self.lkey,
                }],
            })
            .unwrap();
    }

    fn hello(&self) -> Hello {
        let addr = self.qp.address();
        Hello {
            block_size: BLOCK as u32 * 8,
            sq_size: DEPTH as u16,
            rq_size: DEPTH as u16,
            lid: addr.port.lid,
            gid: addr.port.gid,
            qp_num: addr.qp_num,
            ece: None,
        }
    }

    fn connect_to(&self, peer: &Hello) {
        self.qp
            .connect(&QpAddress {
                port: PortAddress {
                    gid: peer.gid,
                    lid: peer.lid,
                },
                qp_num: peer.qp_num,
            })
            .unwrap();
    }

    /// Sends `data` from send slot `slot` with `imm`.
    fn send(&self, slot: u64, data: &[u8], imm: u32) {
        let addr = self.block(u64::from(DEPTH) + slot % u64::from(DEPTH));
        // SAFETY: the send block is inside the registered `_mem`, at least BLOCK bytes long, and
        // no posted request targets it (each is reused only after its send completed: callers
        // wait for a send's completion before reusing its slot).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
        self.qp
            .post_send(&SendWr {
                wr_id: slot,
                sg_list: vec![Sge {
                    addr,
                    length: data.len() as u32,
                    lkey: self.lkey,
                }],
                op: SendOp::SendWithImm(imm),
                signaled: true,
                solicited: true,
            })
            .unwrap();
    }

    /// Next completion (event mode: arm, poll, wait on the fd).
    fn next(&self) -> WorkCompletion {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        loop {
            if self.cq.poll(&mut out, 1).unwrap() == 1 {
                return out[0];
            }
            self.cq.arm(false).unwrap();
            if self.cq.poll(&mut out, 1).unwrap() == 1 {
                return out[0];
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no completion within {WAIT:?}");
            wait_readable(self.cq.fd(), left).unwrap();
            self.cq.ack_events().unwrap();
        }
    }

    /// Bytes of a completed receive in slot `wc.wr_id`.
    fn received(&self, wc: &WorkCompletion) -> Vec<u8> {
        let mut v = vec![0u8; wc.byte_len as usize];
        // SAFETY: the receive completed, so the device no longer writes its block, which lies in
        // the registered `_mem`; byte_len <= BLOCK was checked by the fabric.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.block(wc.wr_id) as *const u8,
                v.as_mut_ptr(),
                v.len(),
            )
        };
        v
    }
}

fn read_hello(sock: &mut TcpStream, expect: Option<HelloVersion>) -> Hello {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let parsed = match expect {
            Some(v) => handshake::parse_hello_expect(&buf, v),
            None => handshake::parse_hello(&buf),
        };
        match parsed {
            Ok(d) => {
                assert!(d.negotiable);
                assert_eq!(d.consumed, buf.len());
                return d.hello;
            }
            Err(handshake::HelloError::NotEnoughData) => {
                let n = sock.read(&mut chunk).unwrap();
                assert!(n > 0, "EOF during the handshake");
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => panic!("bad hello: {e}"),
        }
    }
}

/// The client: runs only in the child process.
#[test]
fn child_client() {
    let Ok(port) = std::env::var(CHILD_ENV) else {
        return; // not the child: nothing to do
    };
    let version = match std::env::var(VERSION_ENV).as_deref() {
        Ok("3") => HelloVersion::V3,
        _ => HelloVersion::V2,
    };
    let mut sock = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let ep = Endpoint::new();
    sock.write_all(&handshake::encode_hello(version, &ep.hello()))
        .unwrap();
    let server = read_hello(&mut sock, Some(version));
    ep.connect_to(&server);
    sock.write_all(&ack::encode(true)).unwrap();

    // Keep at most DEPTH/2 messages in flight; the server re-posts a receive per message.
    let mut next_reply = 0u64;
    let mut sent = 0u64;
    let mut send_done = 0u64;
    while next_reply < MESSAGES {
        while sent < MESSAGES
            && sent - next_reply < u64::from(DEPTH / 2)
            && sent - send_done < u64::from(DEPTH)
        {
            let msg = format!("message {sent} from pid {}", std::process::id());
            ep.send(sent, msg.as_bytes(), sent as u32);
            sent += 1;
        }
        let wc = ep.next();
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        match wc.opcode {
            WcOpcode::Send => send_done += 1,
            WcOpcode::Recv => {
                // Echoes come back in order, with the immediate plus one.
                assert_eq!(wc.imm_data, Some(next_reply as u32 + 1));
                let expected = format!("message {next_reply} from pid {}", std::process::id());
                assert_eq!(ep.received(&wc), expected.as_bytes());
                ep.post_recv(wc.wr_id);
                next_reply += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    println!("CHILD OK {MESSAGES}");
}

fn serve_one(version: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_client", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, port.to_string())
        .env(VERSION_ENV, version)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let (mut sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let ep = Endpoint::new();
    let client = read_hello(&mut sock, None);
    let expect = if version == "3" {
        HelloVersion::V3
    } else {
        HelloVersion::V2
    };
    ep.connect_to(&client);
    sock.write_all(&handshake::encode_hello(expect, &ep.hello()))
        .unwrap();
    let mut a = [0u8; 4];
    sock.read_exact(&mut a).unwrap();
    assert_eq!(ack::decode(&a), Ok(true));

    // Echo every message back with the immediate plus one.
    // Echoes wait in `backlog` while the send queue is full (send completions lag receives).
    let mut backlog: std::collections::VecDeque<(Vec<u8>, u32)> = Default::default();
    let mut echoed = 0u64;
    let mut acked = 0u64;
    while acked < MESSAGES {
        while echoed - acked < u64::from(DEPTH) {
            let Some((data, imm)) = backlog.pop_front() else {
                break;
            };
            ep.send(echoed, &data, imm);
            echoed += 1;
        }
        let wc = ep.next();
        assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
        match wc.opcode {
            WcOpcode::Recv => {
                backlog.push_back((ep.received(&wc), wc.imm_data.unwrap() + 1));
                ep.post_recv(wc.wr_id);
            }
            WcOpcode::Send => acked += 1,
            other => panic!("unexpected {other:?}"),
        }
    }

    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("client process did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "client failed: {out}");
    assert!(out.contains(&format!("CHILD OK {MESSAGES}")), "{out}");
}

#[test]
fn cross_process_echo_v2() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    serve_one("2");
}

#[test]
fn cross_process_echo_v3() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    serve_one("3");
}
