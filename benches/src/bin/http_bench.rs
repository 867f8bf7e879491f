//! HTTP echo benchmark: a Spindle server (the `http` protocol, a plain handler) side by side
//! with hyper on tokio (same worker count), loaded by `wrk` (a load generator from outside the
//! project, Debian package `wrk`) as a subprocess.
//!
//! ```text
//! cargo run --release -p spindle-benches --bin http_bench             # 3 rounds x 10 s
//! cargo run --release -p spindle-benches --bin http_bench -- --quick  # 1 round x 5 s
//! cargo run --release -p spindle-benches --bin http_bench -- --help   # every option
//! ```
//!
//! Each server answers `POST /echo` with the request body (`--body` bytes, default 64) and
//! `Content-Type: text/plain`, over keep-alive connections. Rounds alternate the servers so
//! they share the machine's noise; the best round of each is reported, as
//! `RESULT http_echo spindle=<qps> hyper=<qps> ratio=<spindle/hyper> unit=req/s better=higher`.
//!
//! Both servers live in this process and only one is loaded at a time, so the process's CPU
//! time (user + system, `getrusage`) during a wrk run is, to within the idle cost of the other
//! server, the CPU the loaded server spent: printed per request for every run, and as
//! `RESULT http_echo_cpu spindle=<us> hyper=<us> ratio=<spindle/hyper> unit=us/req
//! better=lower` (the median of the rounds). On a shared machine this is steadier than QPS.
//! `--only spindle` (or `hyper`) loads one server only (e.g. under `perf record`).
//!
//! Workers: `--workers` (default: number of cores) for both: Spindle's `fiber_concurrency`
//! (set before the first spawn), tokio's `worker_threads`. wrk runs `--wrk-threads` threads
//! (default 1) and `--connections` connections on the same machine, so on a small machine it
//! competes with the server for cores: compare the ratio, not the absolute figures.

use clap::Parser;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "HTTP echo QPS: Spindle vs hyper on tokio, loaded by wrk")]
struct Args {
    /// One round of 5 s per server (under two minutes in all).
    #[arg(long)]
    quick: bool,
    /// Rounds per server (default 3; 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per wrk run (default 10; 5 with --quick).
    #[arg(long)]
    duration: Option<u64>,
    /// Worker threads of both servers (default: number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// wrk connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    wrk_threads: usize,
    /// Request (and response) body bytes.
    #[arg(long, default_value_t = 64)]
    body: usize,
    /// Load only this server (`spindle` or `hyper`); both by default.
    #[arg(long)]
    only: Option<String>,
}

/// One measured wrk run: requests per second and CPU microseconds per request.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    qps: f64,
    cpu_us: f64,
}

/// [`wrk`] with the process's CPU time around it.
fn measure(addr: SocketAddr, args: &Args, seconds: u64, script: &std::path::Path) -> Run {
    let c0 = spindle_benches::process_cpu_time();
    let (qps, requests) = wrk_requests(addr, args, seconds, script);
    let cpu = spindle_benches::process_cpu_time().saturating_sub(c0);
    Run {
        qps,
        cpu_us: cpu.as_secs_f64() * 1e6 / requests.max(1) as f64,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Starts the Spindle server; it lives until the process exits.
fn start_spindle() -> SocketAddr {
    use spindle_rpc::policy::http::{HttpRequest, HttpResponse};
    let mut server = spindle_rpc::server::Server::new(Default::default());
    server
        .add_http_handler("POST", "/echo", |req: &HttpRequest| {
            HttpResponse::new(200)
                .with_header("Content-Type", "text/plain")
                .with_body(req.body.clone())
        })
        .expect("add /echo");
    server
        .start("127.0.0.1:0")
        .expect("start the Spindle server");
    let addr = server.local_addr().expect("bound");
    std::mem::forget(server);
    addr
}

/// Starts hyper (HTTP/1.1, keep-alive) on a tokio runtime of `workers` threads.
fn start_hyper(workers: usize) -> SocketAddr {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("bound");
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>(
                        Response::builder()
                            .header("Content-Type", "text/plain")
                            .body(Full::<Bytes>::new(body))
                            .expect("response"),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    std::mem::forget(rt);
    addr
}

/// Runs wrk against `addr` and returns requests per second.
fn wrk(addr: SocketAddr, args: &Args, seconds: u64, script: &std::path::Path) -> f64 {
    wrk_requests(addr, args, seconds, script).0
}

/// Runs wrk against `addr`: requests per second and requests completed.
fn wrk_requests(
    addr: SocketAddr,
    args: &Args,
    seconds: u64,
    script: &std::path::Path,
) -> (f64, u64) {
    let out = Command::new("wrk")
        .arg(format!("-t{}", args.wrk_threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}/echo"))
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!(
            "http_bench: wrk failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if let Some(e) = errors {
        eprintln!("http_bench: wrk reported: {}", e.trim());
    }
    let qps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            eprintln!("http_bench: no Requests/sec in wrk's output:\n{text}");
            std::process::exit(1);
        });
    // "  123456 requests in 5.00s, 9.87MB read"
    let requests = text
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok())?
        })
        .unwrap_or((qps * seconds as f64) as u64);
    (qps, requests)
}

fn main() {
    let args = Args::parse();
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!(
            "http_bench: wrk is not installed. It is the load generator of this benchmark; \
             install it with `apt-get install -y wrk` (Debian/Ubuntu) and run again."
        );
        std::process::exit(2);
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let seconds = args
        .duration
        .unwrap_or(if args.quick { 5 } else { 10 })
        .max(1);
    if let Err(e) = spindle_runtime::flags::init_from_env() {
        eprintln!("http_bench: {e}");
        std::process::exit(2);
    }
    if let Err(e) = spindle_runtime::flags::runtime_flags::FIBER_CONCURRENCY.set(workers) {
        eprintln!("http_bench: --workers: {e}");
        std::process::exit(2);
    }

    // The wrk script: POST with a fixed body.
    let script = std::env::temp_dir().join(format!("http_bench_{}.lua", std::process::id()));
    {
        let mut f = std::fs::File::create(&script).expect("write the wrk script");
        let body = "x".repeat(args.body);
        writeln!(
            f,
            "wrk.method = \"POST\"\nwrk.body = \"{body}\"\nwrk.headers[\"Content-Type\"] = \"text/plain\""
        )
        .expect("write the wrk script");
    }

    let (run_s, run_h) = match args.only.as_deref() {
        None => (true, true),
        Some("spindle") => (true, false),
        Some("hyper") => (false, true),
        Some(other) => {
            eprintln!("http_bench: --only {other}: expected spindle or hyper");
            std::process::exit(2);
        }
    };
    let spindle = start_spindle();
    let hyper = start_hyper(workers);
    println!(
        "http_bench: {workers} workers, wrk -t{} -c{} -d{seconds}s, {rounds} round(s), {}-byte bodies",
        args.wrk_threads, args.connections, args.body
    );
    // Warm both up (connections, caches, lazily started threads).
    if run_s {
        wrk(spindle, &args, 1, &script);
    }
    if run_h {
        wrk(hyper, &args, 1, &script);
    }
    std::thread::sleep(Duration::from_millis(200));

    let (mut best_s, mut best_h) = (0f64, 0f64);
    let (mut cpu_s, mut cpu_h) = (Vec::new(), Vec::new());
    println!(
        "{:>6} {:>14} {:>14} {:>16} {:>16}",
        "round", "spindle req/s", "hyper req/s", "spindle cpu us/r", "hyper cpu us/r"
    );
    let run = |on: bool, addr| {
        if on {
            measure(addr, &args, seconds, &script)
        } else {
            Run::default()
        }
    };
    for round in 0..rounds {
        // Alternate who goes first.
        let (s, h) = if round % 2 == 0 {
            let s = run(run_s, spindle);
            (s, run(run_h, hyper))
        } else {
            let h = run(run_h, hyper);
            (run(run_s, spindle), h)
        };
        println!(
            "{:>6} {:>14.0} {:>14.0} {:>16.2} {:>16.2}",
            round + 1,
            s.qps,
            h.qps,
            s.cpu_us,
            h.cpu_us
        );
        best_s = best_s.max(s.qps);
        best_h = best_h.max(h.qps);
        cpu_s.push(s.cpu_us);
        cpu_h.push(h.cpu_us);
    }
    let _ = std::fs::remove_file(&script);
    let (cpu_s, cpu_h) = (median(cpu_s), median(cpu_h));
    println!(
        "{:>6} {best_s:>14.0} {best_h:>14.0} {cpu_s:>16.2} {cpu_h:>16.2}",
        "result"
    );
    println!("(req/s: the best round; cpu: the median round)");
    println!(
        "RESULT http_echo spindle={best_s:.0} hyper={best_h:.0} ratio={:.3} unit=req/s better=higher",
        best_s / best_h.max(1.0)
    );
    println!(
        "RESULT http_echo_cpu spindle={cpu_s:.2} hyper={cpu_h:.2} ratio={:.3} unit=us/req better=lower",
        cpu_s / cpu_h.max(1e-9)
    );
    std::process::exit(0);
}
