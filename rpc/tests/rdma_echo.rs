//! Echo over RDMA on the software fabric (event mode: completion fds in the dispatchers):
//! many calls, attachments of several MiB across many blocks, pipelined concurrent calls,
//! `/connections` showing the RDMA endpoint.

mod common;
mod rdma_common;

use common::{echo, echo_server, opts, stub};
use rdma_common::{http_get, setup_small_pools, transports_of};
use spindle_iobuf::IOBuf;
use spindle_rpc::channel::{Channel, ChannelOptions};
use spindle_rpc::proto::example::{EchoRequest, EchoServiceStub};
use spindle_rpc::server::ServerOptions;
use spindle_rpc::service::CallContext;
use std::sync::Arc;

fn rdma_opts() -> ChannelOptions {
    ChannelOptions {
        use_rdma: true,
        ..opts()
    }
}

fn rdma_server() -> spindle_rpc::server::Server {
    setup_small_pools();
    echo_server(ServerOptions {
        rdma: true,
        ..Default::default()
    })
}

/// Echoes `msg` with an attachment of `len` patterned bytes and checks both come back.
fn echo_attachment(s: &EchoServiceStub<Channel>, msg: &str, len: usize, seed: u8) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut ctx = CallContext {
        request_attachment: IOBuf::from(data.clone()),
        ..Default::default()
    };
    let r = s
        .echo(
            &mut ctx,
            &EchoRequest {
                message: msg.to_owned(),
            },
        )
        .unwrap();
    assert_eq!(r.message, msg);
    assert_eq!(ctx.response_attachment.len(), len);
    assert!(
        ctx.response_attachment.to_vec() == data,
        "attachment differs"
    );
}

#[test]
fn echo_over_rdma_many_calls_and_big_attachments() {
    let server = rdma_server();
    let port = server.local_addr().unwrap().port();
    let s = stub(&server, rdma_opts());
    for i in 0..300 {
        assert_eq!(echo(&s, &format!("m{i}")).unwrap(), format!("m{i}"));
    }
    let t = transports_of(port);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t.iter().all(|t| t.starts_with("rdma")), "{t:?}");
    for (i, len) in [1 << 20, 3 << 20, 5 << 20, 64 * 1024 + 17, 1]
        .into_iter()
        .enumerate()
    {
        echo_attachment(&s, "big", len, i as u8);
    }
    // Still on RDMA, both ends.
    let t = transports_of(port);
    assert!(t.iter().all(|t| t.starts_with("rdma")), "{t:?}");
}

#[test]
fn pipelined_concurrent_calls_over_rdma() {
    let server = rdma_server();
    let s = Arc::new(stub(&server, rdma_opts()));
    let handles: Vec<_> = (0..16)
        .map(|f| {
            let s = s.clone();
            spindle_runtime::spawn(move || {
                for i in 0..60 {
                    if i % 7 == 0 {
                        echo_attachment(&s, &format!("{f}/{i}"), 100_000 + f * 1000, f as u8);
                    } else {
                        let m = format!("{f}/{i}");
                        assert_eq!(echo(&s, &m).unwrap(), m);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let port = server.local_addr().unwrap().port();
    assert!(transports_of(port).iter().all(|t| t.starts_with("rdma")));
}

#[test]
fn connections_page_shows_rdma() {
    let server = rdma_server();
    let s = stub(&server, rdma_opts());
    assert_eq!(echo(&s, "x").unwrap(), "x");
    let page = http_get(server.local_addr().unwrap(), "/connections");
    assert!(page.contains("transport"), "{page}");
    assert!(page.contains("rdma qp="), "{page}");
}

/// Pooled and short connections handshake on every new connection and run over RDMA too.
#[test]
fn pooled_and_short_connections_over_rdma() {
    use spindle_rpc::protocol::ConnectionType;
    let server = rdma_server();
    for ty in [ConnectionType::Pooled, ConnectionType::Short] {
        let s = Arc::new(stub(
            &server,
            ChannelOptions {
                connection_type: Some(ty),
                ..rdma_opts()
            },
        ));
        let handles: Vec<_> = (0..4)
            .map(|f| {
                let s = s.clone();
                spindle_runtime::spawn(move || {
                    for i in 0..10 {
                        let m = format!("{ty}/{f}/{i}");
                        assert_eq!(echo(&s, &m).unwrap(), m);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        if ty == ConnectionType::Pooled {
            // The idle pooled connections (both ends) are open while the channel lives.
            let t = transports_of(server.local_addr().unwrap().port());
            assert!(!t.is_empty(), "pooled connections stay open");
            assert!(t.iter().all(|t| t.starts_with("rdma")), "{t:?}");
        }
    }
}
