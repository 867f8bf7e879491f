//! Command-line style arguments: every accepted form, bools, `--`, unknown flags, all-or-nothing.
use spindle_runtime::define_flag;
use spindle_runtime::flags::{self, FlagError};

define_flag!(static ARGS_WORKERS: usize = 0, "workers");
define_flag!(static ARGS_NAME: String = "none", "a name");
define_flag!(static ARGS_VERBOSE: bool = false, "verbose");
define_flag!(static ARGS_CACHE: bool = true, "cache");
define_flag!(static ARGS_RATIO: f64 = 0.5, "a ratio");
define_flag!(static ARGS_OFFSET: i64 = 0, "an offset");
define_flag!(static ARGS_ATOMIC_A: u32 = 1, "first of a pair set together");
define_flag!(static ARGS_ATOMIC_B: u32 = 1, "second of a pair set together",
             validator = |v| if *v > 100 { Err("at most 100".into()) } else { Ok(()) });

#[test]
fn equals_and_separate_value_forms() {
    let rest = flags::parse_args([
        "prog",
        "--args_workers=3",
        "input",
        "--args_name",
        "alpha beta",
        "--args_ratio=0.25",
        "--args_offset",
        "-7",
    ])
    .unwrap();
    assert_eq!(rest, ["prog", "input"]);
    assert_eq!(ARGS_WORKERS.get(), 3);
    assert_eq!(ARGS_NAME.get(), "alpha beta");
    assert_eq!(ARGS_RATIO.get(), 0.25);
    assert_eq!(ARGS_OFFSET.get(), -7);
}

#[test]
fn bool_forms() {
    flags::parse_args(["--args_verbose", "--noargs_cache"]).unwrap();
    assert!(ARGS_VERBOSE.get());
    assert!(!ARGS_CACHE.get());
    flags::parse_args(["--args_verbose=false", "--args_cache=yes"]).unwrap();
    assert!(!ARGS_VERBOSE.get());
    assert!(ARGS_CACHE.get());
    // A bare bool flag never takes the next argument as its value.
    let rest = flags::parse_args(["--args_verbose", "false"]).unwrap();
    assert_eq!(rest, ["false"]);
    assert!(ARGS_VERBOSE.get());
    // `--noNAME` only exists for bools, and takes no value.
    assert!(matches!(
        flags::parse_args(["--noargs_workers"]),
        Err(FlagError::Unknown { .. })
    ));
    assert!(matches!(
        flags::parse_args(["--noargs_cache=true"]),
        Err(FlagError::Unknown { .. })
    ));
    let e = flags::parse_args(["--args_verbose=maybe"]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(r#"invalid value "maybe" for flag --args_verbose"#),
        "{e}"
    );
}

#[test]
fn double_dash_ends_flags_and_other_args_pass_through() {
    let rest =
        flags::parse_args(["-x", "-", "file", "--", "--args_workers=9", "--whatever"]).unwrap();
    assert_eq!(rest, ["-x", "-", "file", "--args_workers=9", "--whatever"]);
    assert_ne!(ARGS_WORKERS.get(), 9);
}

#[test]
fn unknown_flags_are_refused_with_a_suggestion() {
    let e = flags::parse_args(["--args_workerz=2"]).unwrap_err();
    assert_eq!(
        e,
        FlagError::Unknown {
            name: "args_workerz".into(),
            suggestion: Some("args_workers")
        }
    );
    assert_eq!(
        e.to_string(),
        "unknown flag --args_workerz (did you mean --args_workers?)"
    );
    let e = flags::parse_args(["--completely_unrelated_thing"]).unwrap_err();
    assert_eq!(e.to_string(), "unknown flag --completely_unrelated_thing");
}

#[test]
fn missing_and_invalid_values() {
    let e = flags::parse_args(["--args_workers"]).unwrap_err();
    assert_eq!(
        e,
        FlagError::MissingValue {
            flag: "args_workers"
        }
    );
    assert_eq!(
        e.to_string(),
        "flag --args_workers needs a value (--args_workers=VALUE or --args_workers VALUE)"
    );
    // A following flag is not taken as the value.
    let e = flags::parse_args(["--args_workers", "--args_verbose"]).unwrap_err();
    assert_eq!(
        e,
        FlagError::MissingValue {
            flag: "args_workers"
        }
    );
    let e = flags::parse_args(["--args_workers=abc"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid value "abc" for flag --args_workers: expected an unsigned integer"#
    );
}

#[test]
fn nothing_changes_when_any_argument_is_bad() {
    let e = flags::parse_args(["--args_atomic_a=50", "--args_atomic_b=500"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid value "500" for flag --args_atomic_b: at most 100"#
    );
    assert_eq!(ARGS_ATOMIC_A.get(), 1);
    assert!(flags::parse_args(["--args_atomic_a=50", "--nope"]).is_err());
    assert_eq!(ARGS_ATOMIC_A.get(), 1);
    flags::parse_args(["--args_atomic_a=50", "--args_atomic_b=60"]).unwrap();
    assert_eq!((ARGS_ATOMIC_A.get(), ARGS_ATOMIC_B.get()), (50, 60));
}

#[test]
fn runtime_flags_are_reachable_from_another_crate() {
    // Set to its current value so other tests are not disturbed.
    let current = flags::get("stack_size_small").unwrap();
    flags::parse_args([format!("--stack_size_small={current}")]).unwrap();
    let e = flags::parse_args(["--stack_size_small=1000"]).unwrap_err();
    assert!(e.to_string().contains("--stack_size_small"), "{e}");
}
