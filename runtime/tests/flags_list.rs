//! `list` / `info` / `get`: every linked flag, sorted, with complete information.
use spindle_runtime::define_flag;
use spindle_runtime::flags;

define_flag!(static LIST_ZETA: u32 = 1, "last in order", reloadable = true);
define_flag!(static LIST_ALPHA: String = "a", "first in order");

#[test]
fn lists_flags_of_every_linked_crate_sorted_by_name() {
    let all = flags::list();
    let names: Vec<&str> = all.iter().map(|i| i.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    for expected in [
        "fiber_concurrency",
        "stack_size_small",
        "stack_size_normal",
        "stack_size_large",
        "guard_page_size",
        "task_group_ntags",
        "fiber_parking_lots",
        "list_alpha",
        "list_zeta",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    flags::check_defaults().unwrap();
}

#[test]
fn info_is_complete() {
    let zeta = flags::info("list_zeta").unwrap();
    assert_eq!(zeta.name, "list_zeta");
    assert_eq!(zeta.type_name, "u32");
    assert_eq!(zeta.help, "last in order");
    assert!(zeta.reloadable);
    assert!(!zeta.frozen);
    assert_eq!(zeta.module_path, "flags_list");
    assert_eq!(zeta.crate_name(), "flags_list");
    assert_eq!(zeta.env_var, "SPINDLE_LIST_ZETA");
    assert!(zeta.choices.is_empty());
    assert_eq!(zeta.default, "1");

    flags::set("list_zeta", "5").unwrap();
    let zeta = flags::info("list_zeta").unwrap();
    assert_eq!((zeta.value.as_str(), zeta.is_default()), ("5", false));
    assert_eq!(flags::get("list_zeta").unwrap(), "5");
    assert_eq!(LIST_ZETA.get(), 5);

    let rt = flags::info("stack_size_normal").unwrap();
    assert_eq!(
        (rt.default.as_str(), rt.crate_name()),
        ("1048576", "spindle_runtime")
    );
    assert_eq!(LIST_ALPHA.info(), flags::info("list_alpha").unwrap());
    assert!(flags::get("list_nothing").is_err());
}
