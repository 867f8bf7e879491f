//! Reloadable rules: freeze by a consumer, `reload` for run-time changes, unfreeze.
use spindle_runtime::define_flag;
use spindle_runtime::flags::{self, FlagError};

define_flag!(static R_POOL_SIZE: usize = 4, "pool size, read once at start");
define_flag!(static R_TIMEOUT_MS: u64 = 500, "timeout, re-read per call", reloadable = true);
define_flag!(static R_UNFROZEN: usize = 1, "non-reloadable, never frozen");

#[test]
fn frozen_flags_refuse_changes_with_the_reason() {
    R_POOL_SIZE.set(8).unwrap();
    assert!(!R_POOL_SIZE.is_frozen());
    assert_eq!(R_POOL_SIZE.freeze("the test pool"), 8);
    assert!(R_POOL_SIZE.is_frozen());
    assert!(flags::info("r_pool_size").unwrap().frozen);
    let e = R_POOL_SIZE.set(16).unwrap_err();
    assert_eq!(
        e,
        FlagError::Frozen {
            flag: "r_pool_size",
            by: "the test pool"
        }
    );
    assert_eq!(
        e.to_string(),
        "flag --r_pool_size is not reloadable and was already read by the test pool when it \
         started; set it before that (command line --r_pool_size=VALUE or environment \
         SPINDLE_R_POOL_SIZE)"
    );
    assert!(flags::set("r_pool_size", "16").is_err());
    assert!(flags::parse_args(["--r_pool_size=16"]).is_err());
    assert!(flags::init_from_env_vars([("SPINDLE_R_POOL_SIZE", "16")]).is_err());
    // A second freeze keeps the first consumer's name.
    R_POOL_SIZE.freeze("someone else");
    let e = R_POOL_SIZE.set(1).unwrap_err();
    assert_eq!(
        e,
        FlagError::Frozen {
            flag: "r_pool_size",
            by: "the test pool"
        }
    );
    assert_eq!(R_POOL_SIZE.get(), 8);
    R_POOL_SIZE.unfreeze();
    R_POOL_SIZE.set(16).unwrap();
    assert_eq!(R_POOL_SIZE.get(), 16);
}

#[test]
fn reloadable_flags_never_freeze() {
    assert_eq!(R_TIMEOUT_MS.freeze("the channel"), 500);
    assert!(!R_TIMEOUT_MS.is_frozen());
    flags::reload("r_timeout_ms", "200").unwrap();
    assert_eq!(R_TIMEOUT_MS.get(), 200);
    R_TIMEOUT_MS.set(300).unwrap();
    assert_eq!(R_TIMEOUT_MS.get(), 300);
}

#[test]
fn reload_refuses_non_reloadable_flags_even_unfrozen() {
    let e = flags::reload("r_unfrozen", "2").unwrap_err();
    assert_eq!(e, FlagError::NotReloadable { flag: "r_unfrozen" });
    assert_eq!(
        e.to_string(),
        "flag --r_unfrozen is not reloadable: it can only be set before the subsystem that reads \
         it starts"
    );
    assert_eq!(R_UNFROZEN.get(), 1);
    flags::set("r_unfrozen", "2").unwrap();
    assert_eq!(R_UNFROZEN.get(), 2);
    assert!(matches!(
        flags::reload("r_nope", "1"),
        Err(FlagError::Unknown { .. })
    ));
}

#[test]
fn runtime_flags_are_not_reloadable() {
    for name in [
        "fiber_concurrency",
        "stack_size_small",
        "guard_page_size",
        "task_group_ntags",
    ] {
        assert!(!flags::info(name).unwrap().reloadable, "{name}");
        assert!(matches!(
            flags::reload(name, "1"),
            Err(FlagError::NotReloadable { .. })
        ));
    }
}
