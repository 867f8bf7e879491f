//! The environment source: `SPINDLE_<NAME>`, errors naming the variable and the flag, precedence.
use spindle_runtime::define_flag;
use spindle_runtime::flags::{self, FlagError};

define_flag!(static ENV_THREADS: usize = 2, "threads");
define_flag!(static ENV_LABEL: String = "", "a label");
define_flag!(static ENV_STRICT: bool = false, "strict mode");
define_flag!(static ENV_BAD: i32 = 0, "gets a bad value from the environment");
define_flag!(static ENV_PRECEDENCE: u64 = 1, "set by both env and args");

#[test]
fn applies_matching_variables_only() {
    let n = flags::init_from_env_vars([
        ("SPINDLE_ENV_THREADS", "6"),
        ("SPINDLE_ENV_LABEL", "blue"),
        ("SPINDLE_ENV_STRICT", "on"),
        ("SPINDLE_NOT_A_FLAG", "1"),
        ("SPINDLE_env_threads", "9"),
        ("ENV_THREADS", "9"),
        ("PATH", "/bin"),
    ])
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(ENV_THREADS.get(), 6);
    assert_eq!(ENV_LABEL.get(), "blue");
    assert!(ENV_STRICT.get());
    assert_eq!(ENV_THREADS.env_var(), "SPINDLE_ENV_THREADS");
}

#[test]
fn bad_value_names_variable_and_flag() {
    let e = flags::init_from_env_vars([("SPINDLE_ENV_BAD", "x1")]).unwrap_err();
    assert!(matches!(&e, FlagError::Env { var, .. } if var == "SPINDLE_ENV_BAD"));
    assert_eq!(e.flag(), "env_bad");
    assert_eq!(
        e.to_string(),
        r#"environment variable SPINDLE_ENV_BAD: invalid value "x1" for flag --env_bad: expected an integer"#
    );
    assert!(std::error::Error::source(&e).is_some());
    let e = flags::init_from_env_vars([("SPINDLE_ENV_BAD", "99999999999")]).unwrap_err();
    assert!(e.to_string().contains("out of range for i32"), "{e}");
    assert_eq!(ENV_BAD.get(), 0);
}

#[test]
fn process_environment_then_command_line() {
    // Only this test touches these variables.
    std::env::set_var("SPINDLE_ENV_PRECEDENCE", "10");
    assert!(flags::init_from_env().unwrap() >= 1);
    assert_eq!(ENV_PRECEDENCE.get(), 10);
    let rest = flags::init(["prog", "--env_precedence=20"]).unwrap();
    assert_eq!(rest, ["prog"]);
    assert_eq!(
        ENV_PRECEDENCE.get(),
        20,
        "the command line overrides the environment"
    );
    std::env::set_var("SPINDLE_ENV_PRECEDENCE", "ten");
    let e = flags::init_from_env().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("environment variable SPINDLE_ENV_PRECEDENCE:"),
        "{e}"
    );
    std::env::remove_var("SPINDLE_ENV_PRECEDENCE");
    assert_eq!(ENV_PRECEDENCE.get(), 20);
}
