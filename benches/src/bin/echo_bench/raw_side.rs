//! The raw limit: an epoll echo with baidu_std's 12-byte framing (`"PRPC"`, body size u32
//! big-endian, meta size u32 big-endian; here meta size 0 and the body is payload +
//! attachment) and no framework.
//!
//! Server: `workers` threads, each with its own level-triggered epoll over its share of the
//! connections (assigned round-robin at accept). A thread reads a connection until `EAGAIN`,
//! cuts the complete frames and writes them back as they are, straight from the read buffer
//! (one `write` for every complete frame of the read; only what the socket does not take is
//! copied, and `EPOLLOUT` is armed for it).
//!
//! Client: `workers` threads, each owning a share of the connections. A connection starts
//! with `depth` requests written back to back; every response (responses come back in order)
//! records the latency of the oldest outstanding request and queues the next request; the
//! requests queued by one read go out in one `write`.

use crate::measure::{new_histogram, Case, Outcome, Run, Timing, STOP};
use std::collections::VecDeque;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frame header length: magic, body size, meta size.
const HEADER: usize = 12;
/// Smallest read: a read buffer always has this much room.
const READ_CHUNK: usize = 64 * 1024;

/// One non-blocking connection with its buffers.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed: `rbuf[rstart..]`.
    rbuf: Vec<u8>,
    rstart: usize,
    /// Bytes to write: `wbuf[wpos..]`.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Whether `EPOLLOUT` is in the interest set.
    out_armed: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Conn {
            stream,
            rbuf: Vec::with_capacity(READ_CHUNK),
            rstart: 0,
            wbuf: Vec::new(),
            wpos: 0,
            out_armed: false,
        })
    }

    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Reads until `EAGAIN`. `Ok(false)` on end of stream.
    fn read_all(&mut self) -> io::Result<bool> {
        loop {
            if self.rstart == self.rbuf.len() {
                self.rbuf.clear();
                self.rstart = 0;
            } else if self.rstart > self.rbuf.capacity() / 2 {
                self.rbuf.drain(..self.rstart);
                self.rstart = 0;
            }
            // Room for at least a chunk, or the rest of the frame at the front.
            let need = frame_len(&self.rbuf[self.rstart..]).unwrap_or(0);
            let want = READ_CHUNK.max(need.saturating_sub(self.rbuf.len() - self.rstart));
            self.rbuf.reserve(want);
            let fd = self.fd();
            let spare = self.rbuf.spare_capacity_mut();
            // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `rbuf`; the
            // kernel writes at most that many bytes into it.
            let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
            if n > 0 {
                let len = self.rbuf.len() + n as usize;
                // SAFETY: the kernel initialised the `n` bytes after the old length, and `len`
                // is within the capacity reserved above.
                unsafe { self.rbuf.set_len(len) };
            } else if n == 0 {
                return Ok(false);
            } else {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(true),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
        }
    }

    /// Writes `data` (first whatever is pending); keeps what the socket does not take.
    fn write_or_keep(&mut self, data: &[u8]) -> io::Result<()> {
        if self.wpos < self.wbuf.len() {
            self.wbuf.extend_from_slice(data);
            return self.flush();
        }
        let n = write_some(self.fd(), data)?;
        if n < data.len() {
            self.wbuf.clear();
            self.wpos = 0;
            self.wbuf.extend_from_slice(&data[n..]);
        }
        Ok(())
    }

    /// Writes pending bytes until done or `EAGAIN`.
    fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            let n = write_some(self.fd(), &self.wbuf[self.wpos..])?;
            if n == 0 {
                break;
            }
            self.wpos += n;
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        Ok(())
    }

    /// Whether bytes wait for `EPOLLOUT`.
    fn pending(&self) -> bool {
        self.wpos < self.wbuf.len()
    }
}

/// `write` until done or `EAGAIN`; the bytes written.
fn write_some(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        let rest = &data[done..];
        // SAFETY: `rest` is a valid readable slice of `rest.len()` bytes.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n >= 0 {
            done += n as usize;
        } else {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => break,
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }
    Ok(done)
}

/// Length of the frame at the front of `buf` if its header is there; `None` before 12 bytes.
/// A wrong magic yields `Some(usize::MAX)`, which never completes.
fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < HEADER {
        return None;
    }
    if &buf[..4] != b"PRPC" {
        return Some(usize::MAX);
    }
    let body = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    Some(HEADER + body)
}

/// A framed request: header + `body` bytes.
fn frame(body: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + body);
    f.extend_from_slice(b"PRPC");
    f.extend_from_slice(&(body as u32).to_be_bytes());
    f.extend_from_slice(&0u32.to_be_bytes());
    f.resize(HEADER + body, b'x');
    f
}

/// A level-triggered epoll instance.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall without pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    /// Adds (`add`) or modifies the interest of `fd`, tagged `token`.
    fn ctl(&self, fd: RawFd, token: usize, out: bool, add: bool) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | if out { libc::EPOLLOUT } else { 0 }) as u32,
            u64: token as u64,
        };
        let op = if add {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `ms` for events; the tokens that are ready.
    fn wait(&self, events: &mut [libc::epoll_event], ms: i32) -> io::Result<usize> {
        // SAFETY: `events` is a valid writable array of `events.len()` epoll_events.
        let n = unsafe { libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the fd is owned by this value and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Arms or disarms `EPOLLOUT` on `c` to match whether it has pending bytes.
fn sync_out(ep: &Epoll, token: usize, c: &mut Conn) -> io::Result<()> {
    if c.pending() != c.out_armed {
        c.out_armed = c.pending();
        ep.ctl(c.fd(), token, c.out_armed, false)?;
    }
    Ok(())
}

/// One server thread: echoes every complete frame on its connections until `stop`.
fn server_thread(mut conns: Vec<Conn>, stop: Arc<AtomicBool>) -> io::Result<()> {
    let ep = Epoll::new()?;
    for (i, c) in conns.iter().enumerate() {
        ep.ctl(c.fd(), i, false, true)?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut open = vec![true; conns.len()];
    while !stop.load(Ordering::Relaxed) {
        let n = ep.wait(&mut events, 20)?;
        for ev in &events[..n] {
            let i = ev.u64 as usize;
            if !open[i] {
                continue;
            }
            let c = &mut conns[i];
            // A connection the client closed or reset is dropped, not an error of the server.
            let mut alive = true;
            if ev.events & libc::EPOLLOUT as u32 != 0 {
                alive = c.flush().is_ok();
            }
            if alive && ev.events & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                alive = c.read_all().unwrap_or(false);
                // Every complete frame, back as it came.
                let mut end = c.rstart;
                while let Some(len) = frame_len(&c.rbuf[end..]) {
                    if len == usize::MAX || c.rbuf.len() - end < len {
                        break;
                    }
                    end += len;
                }
                if end > c.rstart {
                    let (start, rbuf) = (c.rstart, std::mem::take(&mut c.rbuf));
                    alive &= c.write_or_keep(&rbuf[start..end]).is_ok();
                    c.rbuf = rbuf;
                    c.rstart = end;
                }
            }
            if !alive {
                open[i] = false;
                // SAFETY: `fd` is open (owned by `c.stream`); removing it needs no event.
                unsafe { libc::epoll_ctl(ep.0, libc::EPOLL_CTL_DEL, c.fd(), std::ptr::null_mut()) };
                continue;
            }
            sync_out(&ep, i, c)?;
        }
    }
    Ok(())
}

/// Per-connection client state.
struct ClientConn {
    conn: Conn,
    /// Send times of outstanding requests, oldest first.
    sent: VecDeque<Instant>,
}

/// One client thread: keeps `depth` requests in flight on each of its connections.
fn client_thread(
    conns: Vec<Conn>,
    depth: usize,
    request: Arc<Vec<u8>>,
    run: Arc<Run>,
    give_up: Arc<AtomicBool>,
) {
    let lanes = conns.len() * depth;
    let mut hist = new_histogram();
    if let Err(e) = client_loop(conns, depth, &request, &run, &give_up, &mut hist) {
        run.error(|| format!("raw: {e}"));
    }
    for _ in 0..lanes {
        run.lane_done(&hist);
        hist.reset();
    }
}

fn client_loop(
    conns: Vec<Conn>,
    depth: usize,
    request: &[u8],
    run: &Run,
    give_up: &AtomicBool,
    hist: &mut hdrhistogram::Histogram<u64>,
) -> io::Result<()> {
    let ep = Epoll::new()?;
    let mut cs: Vec<ClientConn> = conns
        .into_iter()
        .map(|conn| ClientConn {
            conn,
            sent: VecDeque::with_capacity(depth),
        })
        .collect();
    for (i, c) in cs.iter_mut().enumerate() {
        ep.ctl(c.conn.fd(), i, false, true)?;
        let mut batch = Vec::with_capacity(request.len() * depth);
        let now = Instant::now();
        for _ in 0..depth {
            batch.extend_from_slice(request);
            c.sent.push_back(now);
        }
        c.conn.write_or_keep(&batch)?;
        sync_out(&ep, i, &mut c.conn)?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut batch = Vec::new();
    loop {
        let outstanding: usize = cs.iter().map(|c| c.sent.len()).sum();
        if outstanding == 0 || give_up.load(Ordering::Relaxed) {
            return Ok(());
        }
        let n = ep.wait(&mut events, 20)?;
        for ev in &events[..n] {
            let i = ev.u64 as usize;
            let c = &mut cs[i];
            if ev.events & libc::EPOLLOUT as u32 != 0 {
                c.conn.flush()?;
            }
            if ev.events & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                if !c.conn.read_all()? {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ));
                }
                batch.clear();
                let mut next = 0;
                let stopping = run.phase() == STOP;
                while let Some(len) = frame_len(&c.conn.rbuf[c.conn.rstart..]) {
                    if len != request.len() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("wrong answer: frame of {len} bytes"),
                        ));
                    }
                    if c.conn.rbuf.len() - c.conn.rstart < len {
                        break;
                    }
                    c.conn.rstart += len;
                    let Some(at) = c.sent.pop_front() else {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a response without a request",
                        ));
                    };
                    let now = Instant::now();
                    run.record(hist, now - at);
                    if !stopping {
                        next += 1;
                        c.sent.push_back(now);
                    }
                }
                // One request goes out from the template (no copy), several in one batch.
                if next == 1 {
                    c.conn.write_or_keep(request)?;
                } else if next > 1 {
                    for _ in 0..next {
                        batch.extend_from_slice(request);
                    }
                    c.conn.write_or_keep(&batch)?;
                }
            }
            sync_out(&ep, i, &mut c.conn)?;
        }
    }
}

/// Runs `case` with `workers` server threads and `workers` client threads.
pub fn run(case: &Case, timing: Timing, workers: usize) -> Outcome {
    match try_run(case, timing, workers) {
        Ok(o) => o,
        Err(e) => Outcome::failed(format!("raw: {e}")),
    }
}

fn try_run(case: &Case, timing: Timing, workers: usize) -> io::Result<Outcome> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut server_conns: Vec<Vec<Conn>> = (0..workers).map(|_| Vec::new()).collect();
    let mut client_conns: Vec<Vec<Conn>> = (0..workers).map(|_| Vec::new()).collect();
    for i in 0..case.connections {
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        client_conns[i % workers].push(Conn::new(client)?);
        server_conns[i % workers].push(Conn::new(server)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let give_up = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    for (t, conns) in server_conns.into_iter().enumerate() {
        let stop = stop.clone();
        servers.push(
            std::thread::Builder::new()
                .name(format!("raw-server-{t}"))
                .spawn(move || server_thread(conns, stop))?,
        );
    }
    let run = Run::new();
    let request = Arc::new(frame(case.payload + case.attachment));
    let mut clients = Vec::new();
    for (t, conns) in client_conns.into_iter().enumerate() {
        if conns.is_empty() {
            continue;
        }
        let (run, request, give_up) = (run.clone(), request.clone(), give_up.clone());
        let depth = case.depth;
        clients.push(
            std::thread::Builder::new()
                .name(format!("raw-client-{t}"))
                .spawn(move || client_thread(conns, depth, request, run, give_up))?,
        );
    }
    let out = crate::measure::run_phases(&run, case.lanes(), timing);
    give_up.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    stop.store(true, Ordering::Relaxed);
    let mut out = out;
    for s in servers {
        match s.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                out.errors += 1;
                out.note.get_or_insert(format!("raw server: {e}"));
            }
            Err(_) => {
                out.errors += 1;
                out.note.get_or_insert("raw server panicked".to_owned());
            }
        }
    }
    // Lets the sockets' close finish before the next case starts.
    std::thread::sleep(Duration::from_millis(10));
    Ok(out)
}
