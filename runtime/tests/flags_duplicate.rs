//! Two definitions of one name (in different modules): name lookups refuse with `Ambiguous`,
//! naming both modules; `list` shows both; each static still works.
use spindle_runtime::flags::{self, FlagError};

mod first {
    spindle_runtime::define_flag!(pub static DUP_FLAG: u32 = 1, "first definition");
}
mod second {
    spindle_runtime::define_flag!(pub static DUP_FLAG: u32 = 2, "second definition");
}

#[test]
fn duplicate_names_are_ambiguous() {
    let e = flags::get("dup_flag").unwrap_err();
    assert_eq!(
        e,
        FlagError::Ambiguous {
            flag: "dup_flag",
            modules: vec!["flags_duplicate::first", "flags_duplicate::second"]
        }
    );
    assert_eq!(
        e.to_string(),
        "flag --dup_flag is defined more than once (in flags_duplicate::first, \
         flags_duplicate::second); rename one of them"
    );
    assert!(flags::set("dup_flag", "3").is_err());
    assert!(flags::parse_args(["--dup_flag=3"]).is_err());
    let e = flags::init_from_env_vars([("SPINDLE_DUP_FLAG", "3")]).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("environment variable SPINDLE_DUP_FLAG: flag --dup_flag"));
    let listed: Vec<_> = flags::list()
        .into_iter()
        .filter(|i| i.name == "dup_flag")
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].module_path, "flags_duplicate::first");
    assert_eq!((first::DUP_FLAG.get(), second::DUP_FLAG.get()), (1, 2));
}
