//! The registry: exposing, duplicates, hiding on drop, wildcard filters, describe, and the
//! default variables.

use spindle_metrics::{
    expose_default_variables, to_underscored_name, Adder, Exposable, ExposeError, Maxer,
    PassiveStatus, Registry, Value, WildcardFilter,
};

#[test]
fn expose_normalises_and_refuses_duplicates() {
    let reg = Registry::new();
    let a = Adder::new();
    a.expose_in(&reg, "Rpc.Server::ErrorCount").unwrap();
    assert_eq!(a.exposed_name().as_deref(), Some("rpc_server_error_count"));
    let b = Adder::new();
    assert_eq!(
        b.expose_in(&reg, "rpc_server_error_count"),
        Err(ExposeError::Duplicate("rpc_server_error_count".into()))
    );
    assert_eq!(b.exposed_name(), None);
    assert!(matches!(
        b.expose_in(&reg, "::"),
        Err(ExposeError::EmptyName(_))
    ));
    a.add(3);
    assert_eq!(
        reg.value("RpcServer ErrorCount"),
        Some(Value::Int(3)),
        "lookups normalise"
    );
    assert_eq!(reg.value("rpc_server_error_count"), Some(Value::Int(3)));
    // Re-exposing renames.
    a.expose_in(&reg, "renamed").unwrap();
    assert_eq!(reg.list(), ["renamed"]);
    drop(a);
    assert!(reg.list().is_empty(), "hidden on drop");
    assert!(!b.hide());
}

#[test]
fn global_registry_and_hide() {
    let a = Adder::new();
    a.expose("registry_test_global_counter").unwrap();
    assert!(Registry::global()
        .list()
        .contains(&"registry_test_global_counter".to_string()));
    assert!(a.hide());
    assert!(Registry::global()
        .get("registry_test_global_counter")
        .is_none());
}

#[test]
fn find_and_describe_with_wildcards() {
    let reg = Registry::new();
    let names = [
        "rpc_server_8000_echo_qps",
        "rpc_server_8000_echo_count",
        "rpc_client_echo_qps",
        "process_cpu_usage",
        "process_fd_count",
    ];
    let vars: Vec<Adder> = names.iter().map(|_| Adder::new()).collect();
    for (i, (n, v)) in names.iter().zip(&vars).enumerate() {
        v.add(i as i64);
        v.expose_in(&reg, n).unwrap();
    }
    let find = |f: &str| reg.find(&WildcardFilter::new(f));
    assert_eq!(
        find("*_qps"),
        ["rpc_client_echo_qps", "rpc_server_8000_echo_qps"]
    );
    assert_eq!(
        find("process_*;rpc_client*"),
        [
            "process_cpu_usage",
            "process_fd_count",
            "rpc_client_echo_qps"
        ]
    );
    assert_eq!(find("process_fd_coun?,nothing"), ["process_fd_count"]);
    assert_eq!(find("process_fd_count"), ["process_fd_count"]);
    assert_eq!(find("").len(), 5);
    assert!(find("rpc").is_empty());
    let dollar = reg.find(&WildcardFilter::with_question_mark(
        "process_$pu_usage",
        '$',
    ));
    assert_eq!(dollar, ["process_cpu_usage"]);
    assert_eq!(
        reg.describe(&WildcardFilter::new("rpc_server*")),
        "rpc_server_8000_echo_count : 1\nrpc_server_8000_echo_qps : 0\n"
    );
}

#[test]
fn names_are_normalised_like_bvar() {
    for (raw, want) in [
        ("EchoService", "echo_service"),
        ("example.EchoService.Echo", "example_echo_service_echo"),
        ("IOBufBlockCount", "iobuf_block_count"),
        ("a--b", "a_b"),
        ("x_Y", "x_y"),
        ("rpc_server_8000", "rpc_server_8000"),
    ] {
        assert_eq!(to_underscored_name(raw), want, "{raw}");
    }
}

#[test]
fn describe_shows_every_kind() {
    let reg = Registry::new();
    let m = Maxer::new();
    m.record(9);
    m.expose_in(&reg, "a_max").unwrap();
    let p = PassiveStatus::new(|| 0.5f64);
    p.expose_in(&reg, "b_ratio").unwrap();
    let t = PassiveStatus::new(|| "v1.2".to_string());
    t.expose_in(&reg, "c_version").unwrap();
    assert_eq!(
        reg.describe(&WildcardFilter::new("")),
        "a_max : 9\nb_ratio : 0.5\nc_version : \"v1.2\"\n"
    );
}

#[test]
fn default_variables_are_exposed_once() {
    expose_default_variables().unwrap();
    expose_default_variables().unwrap();
    let reg = Registry::global();
    for name in [
        "process_cpu_usage",
        "process_memory_resident",
        "process_fd_count",
        "process_thread_count",
        "process_uptime",
        "fiber_worker_count",
        "fiber_count",
        "fiber_created_count",
        "fiber_switch_second",
        "fiber_steal_count",
        "fiber_park_count",
    ] {
        let v = reg.value(name).unwrap_or_else(|| panic!("{name} missing"));
        let x = v.as_f64().unwrap_or(-1.0);
        assert!(x >= 0.0, "{name} = {v}");
    }
    if std::path::Path::new("/proc/self/statm").exists() {
        assert!(
            reg.value("process_memory_resident")
                .unwrap()
                .as_f64()
                .unwrap()
                > 0.0
        );
        assert!(reg.value("process_thread_count").unwrap().as_f64().unwrap() >= 1.0);
    }
}
