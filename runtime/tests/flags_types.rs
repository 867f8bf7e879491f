//! Every flag type: parsing, printing, ranges, choices and validators.
use spindle_runtime::define_flag;
use spindle_runtime::flags::{self, Choice, Flag, FlagError};

define_flag!(static T_BOOL: bool = true, "a bool");
define_flag!(static T_I32: i32 = -1, "an i32");
define_flag!(static T_I64: i64 = 1 << 40, "an i64");
define_flag!(static T_U32: u32 = 7, "a u32");
define_flag!(static T_U64: u64 = u64::MAX, "a u64");
define_flag!(static T_USIZE: usize = 0x10, "a usize");
define_flag!(static T_F64: f64 = 1.5, "an f64",
             validator = |v| if *v < 0.0 { Err("must not be negative".into()) } else { Ok(()) });
define_flag!(static T_STRING: String = "hello", "a string",
             validator = |v| if v.contains(' ') { Err("no spaces".into()) } else { Ok(()) });
define_flag!(
    /// A choice with a validator of its own.
    pub static T_CHOICE: Choice = "default", "a choice",
    choices = ["default", "large", "huge"],
    validator = |v| if *v == "huge" { Err("huge blocks are disabled here".into()) } else { Ok(()) },
    reloadable = true,
);

fn reason(e: FlagError) -> String {
    match e {
        FlagError::InvalidValue { reason, .. } => reason,
        other => panic!("not InvalidValue: {other}"),
    }
}

#[test]
fn integers() {
    assert_eq!(T_I32.get(), -1);
    T_I32.set_str("-42").unwrap();
    assert_eq!(T_I32.get(), -42);
    assert_eq!(T_I64.get(), 1 << 40);
    assert_eq!(T_U64.get(), u64::MAX);
    assert_eq!(flags::get("t_u64").unwrap(), u64::MAX.to_string());
    T_U32.set_str("0x20").unwrap();
    assert_eq!(T_U32.get(), 32);
    assert_eq!(
        reason(T_U32.set_str("-1").unwrap_err()),
        "expected an unsigned integer"
    );
    assert_eq!(
        reason(T_U32.set_str("4294967296").unwrap_err()),
        "expected an unsigned integer, and this is out of range for u32 (0..=4294967295)"
    );
    assert_eq!(
        reason(T_I32.set_str("").unwrap_err()),
        "expected an integer"
    );
    assert_eq!(
        reason(T_USIZE.set_str("1.5").unwrap_err()),
        "expected an unsigned integer"
    );
    assert_eq!(T_USIZE.default_value(), 16);
}

#[test]
fn bools() {
    for (text, v) in [
        ("TRUE", true),
        ("0", false),
        ("yes", true),
        ("off", false),
        ("t", true),
    ] {
        T_BOOL.set_str(text).unwrap();
        assert_eq!(T_BOOL.get(), v, "{text}");
    }
    assert!(T_BOOL.set_str("2").is_err());
    assert_eq!(flags::info("t_bool").unwrap().type_name, "bool");
}

#[test]
fn floats() {
    T_F64.set_str("2.75").unwrap();
    assert_eq!(T_F64.get(), 2.75);
    assert_eq!(flags::get("t_f64").unwrap(), "2.75");
    assert_eq!(reason(T_F64.set_str("x").unwrap_err()), "expected a number");
    assert_eq!(
        reason(T_F64.set_str("NaN").unwrap_err()),
        "expected a finite number"
    );
    assert_eq!(
        reason(T_F64.set(f64::INFINITY).unwrap_err()),
        "expected a finite number"
    );
    let e = T_F64.set(-1.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid value "-1" for flag --t_f64: must not be negative"#
    );
    assert_eq!(T_F64.get(), 2.75);
}

#[test]
fn strings() {
    assert_eq!(T_STRING.default_value(), "hello");
    T_STRING.set("world".to_string()).unwrap();
    assert_eq!(T_STRING.get(), "world");
    assert_eq!(T_STRING.with(str::len), 5);
    flags::set("t_string", "").unwrap();
    assert_eq!(T_STRING.get(), "");
    let e = flags::set("t_string", "a b").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid value "a b" for flag --t_string: no spaces"#
    );
}

#[test]
fn choices() {
    let flag: &Flag<Choice> = &T_CHOICE;
    assert_eq!(flag.get(), "default");
    assert_eq!(flag.choices(), ["default", "large", "huge"]);
    flag.set("large").unwrap();
    assert_eq!(flags::get("t_choice").unwrap(), "large");
    let e = flags::set("t_choice", "tiny").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid value "tiny" for flag --t_choice: expected one of "default", "large", "huge""#
    );
    assert!(flag.set("tiny").is_err());
    let e = flags::set("t_choice", "huge").unwrap_err();
    assert_eq!(reason(e), "huge blocks are disabled here");
    assert_eq!(flag.get(), "large");
    let info = flags::info("t_choice").unwrap();
    assert_eq!((info.type_name, info.choices.len()), ("choice", 3));
}

#[test]
fn names_and_debug() {
    assert_eq!(T_I64.name(), "t_i64");
    assert_eq!(T_I64.help(), "an i64");
    assert!(T_I64.module_path().starts_with("flags_types"));
    let dbg = format!("{:?}", T_U64);
    assert!(
        dbg.contains("t_u64") && dbg.contains("18446744073709551615"),
        "{dbg}"
    );
}
