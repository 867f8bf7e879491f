//! RDMA vs TCP: the `rdma_performance` workload (rpc/examples/common/rdma_load.rs) over the
//! software fabric and over TCP, in one run.
//!
//! ```text
//! cargo run --release -p spindle-benches --bin rdma_bench             # 3 rounds x 5 s per case and transport
//! cargo run --release -p spindle-benches --bin rdma_bench -- --quick  # 1 round x 3 s (under two minutes)
//! ```
//!
//! One process: an echo server with `ServerOptions::rdma`, one channel with `use_rdma` and one
//! without (both to that server). For each case (attachment size × calls in flight), rounds
//! alternate the transports (RDMA, TCP, RDMA, TCP, ...) so both share the machine's noise, and
//! the figures of all rounds of a transport are summed. Printed per case:
//! `RESULT <case>.mbps rdma=<v> tcp=<v> ratio=<rdma/tcp> unit=MB/s better=higher`, the same for
//! `.p99` (`unit=us better=lower`) and `.cpu` (process CPU — client and server — per call,
//! `unit=us_cpu/call better=lower`).
//!
//! Without a NIC the RDMA side is the software fabric, an emulation over Unix sockets that
//! copies every message: its ratio says how much the emulation costs, nothing about hardware.
//! On a machine with a NIC, build with `--features spindle-rdma/ibverbs` and pass
//! `--rdma_backend=ibverbs --rdma_device=<dev>` after `--` as Spindle flags (see docs/rdma.md).

#[path = "../../../rpc/examples/common/echo.rs"]
#[allow(dead_code)]
mod echo;
#[path = "../../../rpc/examples/common/rdma_load.rs"]
#[allow(dead_code)]
mod rdma_load;

use clap::Parser;
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::server::{Server, ServerOptions};
use std::time::Duration;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "rdma_performance over the RDMA transport vs over TCP")]
struct Args {
    /// One round of 3 s per case and transport (under two minutes in all).
    #[arg(long)]
    quick: bool,
    /// Rounds per case and transport (default 3; 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per round (default 5; 3 with --quick).
    #[arg(long)]
    duration: Option<u64>,
    /// Spindle flags (`--rdma_backend=ibverbs`, `--rdma_use_polling`, ...), after `--`.
    #[arg(last = true)]
    flags: Vec<String>,
}

/// (name, attachment bytes, calls in flight).
const CASES: [(&str, usize, usize); 3] = [
    ("4KiB_d8", 4096, 8),
    ("64KiB_d8", 64 * 1024, 8),
    ("1MiB_d4", 1 << 20, 4),
];

fn channel(addr: &str, use_rdma: bool) -> Channel {
    Channel::new(
        addr,
        ChannelOptions {
            use_rdma,
            timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            ..Default::default()
        },
    )
    .expect("channel to the local server")
}

fn main() {
    let args = Args::parse();
    // Registered pools of 256 MiB (brpc's default is 1 GiB); flags given after `--` win.
    spindle_runtime::flags::set("rdma_memory_pool_initial_size_mb", "256").expect("flag");
    let argv = std::iter::once("rdma_bench".to_owned()).chain(args.flags.iter().cloned());
    if let Err(e) = spindle_runtime::flags::init(argv) {
        eprintln!("{e}");
        std::process::exit(2);
    }
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let secs = args.duration.unwrap_or(if args.quick { 3 } else { 5 });
    let mut server = Server::new(ServerOptions {
        rdma: true,
        ..Default::default()
    });
    server
        .add_service(spindle_rpc::proto::example::EchoServiceServer(echo::Echo {
            echo_attachment: true,
        }))
        .expect("echo service");
    server.start("127.0.0.1:0").expect("server start");
    let addr = server.local_addr().expect("bound").to_string();
    let rdma = channel(&addr, true);
    let tcp = channel(&addr, false);
    println!("rdma_bench: {rounds} round(s) x {secs} s per case and transport");
    let mut results = Vec::new();
    for (name, attachment_size, depth) in CASES {
        let cfg = rdma_load::LoadConfig {
            depth,
            request_size: 16,
            attachment_size,
            duration: Duration::from_secs(secs),
            print_every_second: false,
        };
        let mut sums: [Option<rdma_load::Figures>; 2] = [None, None];
        for round in 0..rounds {
            for (i, (label, ch)) in [("rdma", &rdma), ("tcp", &tcp)].into_iter().enumerate() {
                let f = rdma_load::run(ch, &cfg);
                println!("{name} round {round} {label:<4}: {}", f.line());
                sums[i] = Some(match sums[i].take() {
                    None => f,
                    Some(mut acc) => {
                        acc.calls += f.calls;
                        acc.errors += f.errors;
                        acc.elapsed += f.elapsed;
                        acc.bytes += f.bytes;
                        acc.cpu_us += f.cpu_us;
                        let _ = acc.latency_us.add(&f.latency_us);
                        acc
                    }
                });
            }
        }
        let [Some(r), Some(t)] = sums else {
            unreachable!("at least one round ran")
        };
        let p99 = |f: &rdma_load::Figures| f.latency_us.value_at_quantile(0.99) as f64;
        results.push(format!(
            "RESULT {name}.mbps rdma={:.1} tcp={:.1} ratio={:.3} unit=MB/s better=higher",
            r.mb_per_s(),
            t.mb_per_s(),
            r.mb_per_s() / t.mb_per_s().max(1e-9)
        ));
        results.push(format!(
            "RESULT {name}.p99 rdma={:.1} tcp={:.1} ratio={:.3} unit=us better=lower",
            p99(&r),
            p99(&t),
            p99(&r) / p99(&t).max(1e-9)
        ));
        results.push(format!(
            "RESULT {name}.cpu rdma={:.2} tcp={:.2} ratio={:.3} unit=us_cpu/call better=lower",
            r.cpu_per_call(),
            t.cpu_per_call(),
            r.cpu_per_call() / t.cpu_per_call().max(1e-9)
        ));
    }
    let transports = rdma_load::transports();
    let on_rdma = transports.iter().filter(|t| t.starts_with("rdma")).count();
    println!("sockets on RDMA: {on_rdma} (the RDMA channel's connection, both ends)");
    println!("{}", echo::threads_line());
    for line in results {
        println!("{line}");
    }
    server.stop();
    server.join();
}
