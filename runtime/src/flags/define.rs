//! [`define_flag!`](crate::define_flag): defines a flag as a `static` and registers it.

/// Defines a flag as a `static` [`Flag<T>`](crate::flags::Flag) and registers it, so
/// [`flags::list`](crate::flags::list), [`flags::set`](crate::flags::set), the command line and the
/// environment see it in every program that links the defining crate.
///
/// ```text
/// define_flag!(
///     /// optional doc comments and attributes
///     VIS static NAME: TYPE = DEFAULT, "help text"
///     [, choices = ["a", "b", ...]]     // required for `Choice`, not allowed otherwise
///     [, validator = |v| -> Result<(), String> { ... }]
///     [, reloadable = BOOL]              // default false
/// );
/// ```
///
/// - The flag's name is `NAME` in lower case (`FIBER_CONCURRENCY` → `--fiber_concurrency`,
///   environment `SPINDLE_FIBER_CONCURRENCY`). Names are global across all crates: pick brpc's
///   name where the meaning is the same; a clash is reported as [`FlagError::Ambiguous`] by the
///   name-based functions.
/// - `TYPE` is `bool`, `i32`, `i64`, `u32`, `u64`, `usize`, `f64`, `String` (default given as a
///   string literal) or `Choice` (written exactly so; default is one of `choices`, checked at
///   compile time).
/// - `validator` is a non-capturing closure or a `fn(&V) -> Result<(), String>` where `V` is what
///   [`Flag::get`](crate::flags::Flag::get) returns; its `Err` text is the reason in the error.
/// - `reloadable = true`: the value may change while the consumer runs, and the consumer re-reads
///   it. Otherwise the consumer reads it once at start with
///   [`Flag::freeze`](crate::flags::Flag::freeze), and later changes are refused.
///
/// [`FlagError::Ambiguous`]: crate::flags::FlagError::Ambiguous
///
/// ```
/// use spindle_runtime::define_flag;
///
/// define_flag!(
///     /// Connections kept per server.
///     pub static MAX_CONNECTIONS: u32 = 16, "connections kept per server",
///     validator = |v| if *v == 0 { Err("must be positive".into()) } else { Ok(()) },
///     reloadable = true
/// );
/// define_flag!(static SERVER_NAME: String = "spindle", "name shown on /status");
///
/// assert_eq!(MAX_CONNECTIONS.get(), 16);
/// assert_eq!(MAX_CONNECTIONS.name(), "max_connections");
/// MAX_CONNECTIONS.set(32).unwrap();
/// let err = spindle_runtime::flags::set("max_connections", "0").unwrap_err();
/// assert_eq!(err.to_string(), r#"invalid value "0" for flag --max_connections: must be positive"#);
/// assert_eq!(SERVER_NAME.get(), "spindle");
/// ```
#[macro_export]
macro_rules! define_flag {
    // Internal: an optional argument or its default.
    (@or $default:expr;) => { $default };
    (@or $default:expr; $given:expr) => { $given };

    // Choice flags: a list of allowed strings.
    (
        $(#[$attr:meta])*
        $vis:vis static $name:ident : Choice = $default:expr, $help:literal,
        choices = [$($choice:expr),+ $(,)?]
        $(, validator = $validator:expr)?
        $(, reloadable = $reloadable:expr)?
        $(,)?
    ) => {
        $(#[$attr])*
        #[doc = ""]
        #[doc = concat!("Flag (choice of ", $(stringify!($choice), " ",)+ "): ", $help,
                        " Default: `", stringify!($default), "`.")]
        $vis static $name: $crate::flags::Flag<$crate::flags::Choice> = {
            const __LEN: usize = stringify!($name).len();
            const __NAME: [u8; __LEN] = $crate::flags::__private::lower_ascii(stringify!($name));
            $crate::flags::Flag::<$crate::flags::Choice>::__new(
                $crate::flags::__private::as_str(&__NAME),
                $help,
                module_path!(),
                $default,
                &[$($choice),+],
                $crate::define_flag!(@or ::core::option::Option::None;
                    $(::core::option::Option::Some(
                        $crate::flags::Flag::<$crate::flags::Choice>::__validator($validator)))?),
                $crate::define_flag!(@or false; $($reloadable)?),
            )
        };
        $crate::flags::__private::inventory::submit! {
            $crate::flags::__private::Registration(&$name)
        }
    };

    // Every other type.
    (
        $(#[$attr:meta])*
        $vis:vis static $name:ident : $ty:ty = $default:expr, $help:literal
        $(, validator = $validator:expr)?
        $(, reloadable = $reloadable:expr)?
        $(,)?
    ) => {
        $(#[$attr])*
        #[doc = ""]
        #[doc = concat!("Flag (", stringify!($ty), "): ", $help,
                        " Default: `", stringify!($default), "`.")]
        $vis static $name: $crate::flags::Flag<$ty> = {
            const __LEN: usize = stringify!($name).len();
            const __NAME: [u8; __LEN] = $crate::flags::__private::lower_ascii(stringify!($name));
            $crate::flags::Flag::<$ty>::__new(
                $crate::flags::__private::as_str(&__NAME),
                $help,
                module_path!(),
                $default,
                $crate::define_flag!(@or ::core::option::Option::None;
                    $(::core::option::Option::Some(
                        $crate::flags::Flag::<$ty>::__validator($validator)))?),
                $crate::define_flag!(@or false; $($reloadable)?),
            )
        };
        $crate::flags::__private::inventory::submit! {
            $crate::flags::__private::Registration(&$name)
        }
    };
}
