//! Echo over RDMA in polling mode (`rdma_use_polling`): completions reaped by the RDMA
//! pollers (OS threads), which wake writers and start the socket's reader.
//!
//! A test binary of its own: the completion mode is process-wide.

mod common;
mod rdma_common;

use common::{echo, echo_server, opts, stub};
use rdma_common::{setup_small_pools, transports_of};
use spindle_iobuf::IOBuf;
use spindle_rpc::channel::ChannelOptions;
use spindle_rpc::proto::example::EchoRequest;
use spindle_rpc::server::ServerOptions;
use spindle_rpc::service::CallContext;
use std::sync::Arc;

#[test]
fn echo_over_rdma_in_polling_mode() {
    setup_small_pools();
    spindle_runtime::flags::set("rdma_use_polling", "true").unwrap();
    spindle_runtime::flags::set("rdma_poller_num", "2").unwrap();
    spindle_runtime::flags::set("rdma_poller_yield", "true").unwrap();
    let server = echo_server(ServerOptions {
        rdma: true,
        ..Default::default()
    });
    let port = server.local_addr().unwrap().port();
    let s = Arc::new(stub(
        &server,
        ChannelOptions {
            use_rdma: true,
            ..opts()
        },
    ));
    for i in 0..200 {
        assert_eq!(echo(&s, &format!("m{i}")).unwrap(), format!("m{i}"));
    }
    let t = transports_of(port);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t.iter().all(|t| t.starts_with("rdma")), "{t:?}");
    let handles: Vec<_> = (0..8)
        .map(|f| {
            let s = s.clone();
            spindle_runtime::spawn(move || {
                for i in 0..40 {
                    let len = if i % 10 == 0 { 2 << 20 } else { 100 + f * 10 };
                    let data = vec![(f * 7 + i) as u8; len];
                    let mut ctx = CallContext {
                        request_attachment: IOBuf::from(data.clone()),
                        ..Default::default()
                    };
                    let m = format!("{f}/{i}");
                    let r = s
                        .echo(&mut ctx, &EchoRequest { message: m.clone() })
                        .unwrap();
                    assert_eq!(r.message, m);
                    assert!(ctx.response_attachment.to_vec() == data);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(transports_of(port).iter().all(|t| t.starts_with("rdma")));
}
