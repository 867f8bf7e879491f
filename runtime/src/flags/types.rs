//! The value types a flag can have and how each is stored, parsed and printed.
//!
//! | type      | `get()` returns  | storage                  | text syntax                          |
//! |-----------|------------------|--------------------------|--------------------------------------|
//! | `bool`    | `bool`           | `AtomicBool`             | `true/false`, `1/0`, `yes/no`, `on/off` (any case) |
//! | `i32` `i64` | same           | `AtomicI32` / `AtomicI64`| decimal, `0x` hex                    |
//! | `u32` `u64` `usize` | same   | matching atomic          | decimal, `0x` hex                    |
//! | `f64`     | `f64`            | `AtomicU64` (bits)       | any finite Rust float literal        |
//! | `String`  | `String`         | `RwLock<Cow<str>>`       | the text as is                       |
//! | [`Choice`]| `&'static str`   | `AtomicUsize` (index)    | one of the flag's choices            |
//!
//! Each type also has a `const fn __new` on `Flag<T>` (one per type, because a generic `const fn`
//! cannot call trait methods) that [`define_flag!`](crate::define_flag) calls in the static's
//! initializer. The storage cannot go through the crate's loom shim: loom's atomics are not
//! `const`-constructible, and flags are not a lock-free algorithm that needs model checking.
use std::borrow::Cow;
use std::num::IntErrorKind;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed,
};
use std::sync::{PoisonError, RwLock};

use super::flag::{Flag, Validator};

mod sealed {
    pub trait Sealed {}
}

/// A type a flag can have. Sealed: implemented for `bool`, `i32`, `i64`, `u32`, `u64`, `usize`,
/// `f64`, `String` and [`Choice`].
pub trait FlagType: sealed::Sealed + Sized + Send + Sync + 'static {
    /// What [`Flag::get`] returns.
    type Value: Clone + Send + Sync + 'static;
    /// The `const` form of a value (the default), e.g. `&'static str` for `String`.
    type Const: Send + Sync + 'static;
    /// Where the current value lives.
    #[doc(hidden)]
    type Storage: Send + Sync;
    /// The type's name in listings (`"usize"`, `"string"`, `"choice"`, ...).
    const TYPE_NAME: &'static str;
    #[doc(hidden)]
    fn load(flag: &Flag<Self>) -> Self::Value;
    #[doc(hidden)]
    fn store(flag: &Flag<Self>, value: Self::Value);
    #[doc(hidden)]
    fn parse(flag: &Flag<Self>, text: &str) -> Result<Self::Value, String>;
    #[doc(hidden)]
    fn format(value: &Self::Value) -> String;
    #[doc(hidden)]
    fn from_const(flag: &Flag<Self>, c: &Self::Const) -> Self::Value;
    /// The type's own check on a value (only [`Choice`] has one).
    #[doc(hidden)]
    fn check(_flag: &Flag<Self>, _value: &Self::Value) -> Result<(), String> {
        Ok(())
    }
}

/// Parses an integer in decimal or, after `0x`, hexadecimal.
fn parse_radix<T>(
    text: &str,
    from_radix: fn(&str, u32) -> Result<T, std::num::ParseIntError>,
    expected: &str,
    type_name: &str,
    min: &dyn std::fmt::Display,
    max: &dyn std::fmt::Display,
) -> Result<T, String> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    from_radix(digits, radix).map_err(|e| match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
            format!("{expected}, and this is out of range for {type_name} ({min}..={max})")
        }
        _ => expected.to_owned(),
    })
}

macro_rules! int_flag_type {
    ($t:ty, $atomic:ty, $expected:literal) => {
        impl sealed::Sealed for $t {}
        impl FlagType for $t {
            type Value = $t;
            type Const = $t;
            type Storage = $atomic;
            const TYPE_NAME: &'static str = stringify!($t);
            #[inline]
            fn load(flag: &Flag<Self>) -> $t {
                flag.storage.load(Relaxed)
            }
            fn store(flag: &Flag<Self>, value: $t) {
                flag.storage.store(value, Relaxed)
            }
            fn parse(_flag: &Flag<Self>, text: &str) -> Result<$t, String> {
                parse_radix(
                    text,
                    <$t>::from_str_radix,
                    $expected,
                    stringify!($t),
                    &<$t>::MIN,
                    &<$t>::MAX,
                )
            }
            fn format(value: &$t) -> String {
                value.to_string()
            }
            fn from_const(_flag: &Flag<Self>, c: &$t) -> $t {
                *c
            }
        }
        impl Flag<$t> {
            #[doc(hidden)]
            pub const fn __new(
                name: &'static str,
                help: &'static str,
                module_path: &'static str,
                default: $t,
                validator: Option<Validator<$t>>,
                reloadable: bool,
            ) -> Self {
                Flag::from_parts(
                    name,
                    help,
                    module_path,
                    default,
                    &[],
                    validator,
                    reloadable,
                    <$atomic>::new(default),
                )
            }
            /// Identity with a fixed type, so a closure given to `define_flag!` coerces to a
            /// [`Validator`].
            #[doc(hidden)]
            pub const fn __validator(f: Validator<$t>) -> Validator<$t> {
                f
            }
        }
    };
}

int_flag_type!(i32, AtomicI32, "expected an integer");
int_flag_type!(i64, AtomicI64, "expected an integer");
int_flag_type!(u32, AtomicU32, "expected an unsigned integer");
int_flag_type!(u64, AtomicU64, "expected an unsigned integer");
int_flag_type!(usize, AtomicUsize, "expected an unsigned integer");

impl sealed::Sealed for bool {}
impl FlagType for bool {
    type Value = bool;
    type Const = bool;
    type Storage = AtomicBool;
    const TYPE_NAME: &'static str = "bool";
    #[inline]
    fn load(flag: &Flag<Self>) -> bool {
        flag.storage.load(Relaxed)
    }
    fn store(flag: &Flag<Self>, value: bool) {
        flag.storage.store(value, Relaxed)
    }
    fn parse(_flag: &Flag<Self>, text: &str) -> Result<bool, String> {
        match text.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "y" | "on" => Ok(true),
            "false" | "f" | "0" | "no" | "n" | "off" => Ok(false),
            _ => Err("expected a boolean (true/false, 1/0, yes/no, on/off)".to_owned()),
        }
    }
    fn format(value: &bool) -> String {
        value.to_string()
    }
    fn from_const(_flag: &Flag<Self>, c: &bool) -> bool {
        *c
    }
}
impl Flag<bool> {
    #[doc(hidden)]
    pub const fn __new(
        name: &'static str,
        help: &'static str,
        module_path: &'static str,
        default: bool,
        validator: Option<Validator<bool>>,
        reloadable: bool,
    ) -> Self {
        let storage = AtomicBool::new(default);
        Flag::from_parts(
            name,
            help,
            module_path,
            default,
            &[],
            validator,
            reloadable,
            storage,
        )
    }
    #[doc(hidden)]
    pub const fn __validator(f: Validator<bool>) -> Validator<bool> {
        f
    }
}

impl sealed::Sealed for f64 {}
impl FlagType for f64 {
    type Value = f64;
    type Const = f64;
    type Storage = AtomicU64;
    const TYPE_NAME: &'static str = "f64";
    #[inline]
    fn load(flag: &Flag<Self>) -> f64 {
        f64::from_bits(flag.storage.load(Relaxed))
    }
    fn store(flag: &Flag<Self>, value: f64) {
        flag.storage.store(value.to_bits(), Relaxed)
    }
    fn parse(_flag: &Flag<Self>, text: &str) -> Result<f64, String> {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(_) => Err("expected a finite number".to_owned()),
            Err(_) => Err("expected a number".to_owned()),
        }
    }
    fn format(value: &f64) -> String {
        value.to_string()
    }
    fn from_const(_flag: &Flag<Self>, c: &f64) -> f64 {
        *c
    }
    fn check(_flag: &Flag<Self>, value: &f64) -> Result<(), String> {
        if value.is_finite() {
            Ok(())
        } else {
            Err("expected a finite number".to_owned())
        }
    }
}
impl Flag<f64> {
    #[doc(hidden)]
    pub const fn __new(
        name: &'static str,
        help: &'static str,
        module_path: &'static str,
        default: f64,
        validator: Option<Validator<f64>>,
        reloadable: bool,
    ) -> Self {
        let storage = AtomicU64::new(default.to_bits());
        Flag::from_parts(
            name,
            help,
            module_path,
            default,
            &[],
            validator,
            reloadable,
            storage,
        )
    }
    #[doc(hidden)]
    pub const fn __validator(f: Validator<f64>) -> Validator<f64> {
        f
    }
}

impl sealed::Sealed for String {}
impl FlagType for String {
    type Value = String;
    type Const = &'static str;
    type Storage = RwLock<Cow<'static, str>>;
    const TYPE_NAME: &'static str = "string";
    fn load(flag: &Flag<Self>) -> String {
        flag.storage
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .to_string()
    }
    fn store(flag: &Flag<Self>, value: String) {
        *flag.storage.write().unwrap_or_else(PoisonError::into_inner) = Cow::Owned(value);
    }
    fn parse(_flag: &Flag<Self>, text: &str) -> Result<String, String> {
        Ok(text.to_owned())
    }
    fn format(value: &String) -> String {
        value.clone()
    }
    fn from_const(_flag: &Flag<Self>, c: &&'static str) -> String {
        (*c).to_owned()
    }
}
impl Flag<String> {
    #[doc(hidden)]
    pub const fn __new(
        name: &'static str,
        help: &'static str,
        module_path: &'static str,
        default: &'static str,
        validator: Option<Validator<String>>,
        reloadable: bool,
    ) -> Self {
        let storage = RwLock::new(Cow::Borrowed(default));
        Flag::from_parts(
            name,
            help,
            module_path,
            default,
            &[],
            validator,
            reloadable,
            storage,
        )
    }
    #[doc(hidden)]
    pub const fn __validator(f: Validator<String>) -> Validator<String> {
        f
    }

    /// Calls `f` with the current value under the read lock, without cloning it. `f` must not set
    /// this flag (that would deadlock).
    pub fn with<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        f(&self.storage.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Marker type of a string flag restricted to a fixed list of choices (an enum-like flag), e.g.
/// brpc's `rdma_recv_block_type` (`default` / `large` / `huge`). `Flag<Choice>::get` returns the
/// current choice as `&'static str` with one atomic load; setting a value outside the list is
/// refused with a message listing the choices.
///
/// ```
/// spindle_runtime::define_flag!(
///     pub static BLOCK_KIND: Choice = "default", "size class of receive blocks",
///     choices = ["default", "large", "huge"], reloadable = true
/// );
/// assert_eq!(BLOCK_KIND.get(), "default");
/// BLOCK_KIND.set("huge").unwrap();
/// assert_eq!(BLOCK_KIND.get(), "huge");
/// assert!(BLOCK_KIND.set("tiny").is_err());
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Choice {}

impl sealed::Sealed for Choice {}
impl FlagType for Choice {
    type Value = &'static str;
    type Const = &'static str;
    type Storage = AtomicUsize;
    const TYPE_NAME: &'static str = "choice";
    #[inline]
    fn load(flag: &Flag<Self>) -> &'static str {
        flag.choices[flag.storage.load(Relaxed)]
    }
    fn store(flag: &Flag<Self>, value: &'static str) {
        let i = flag.choices.iter().position(|c| *c == value);
        // `check` ran before every store, so `value` is one of the choices.
        flag.storage
            .store(i.expect("choice validated before store"), Relaxed)
    }
    fn parse(flag: &Flag<Self>, text: &str) -> Result<&'static str, String> {
        flag.choices
            .iter()
            .copied()
            .find(|c| *c == text)
            .ok_or_else(|| choices_reason(flag))
    }
    fn format(value: &&'static str) -> String {
        (*value).to_owned()
    }
    fn from_const(_flag: &Flag<Self>, c: &&'static str) -> &'static str {
        c
    }
    fn check(flag: &Flag<Self>, value: &&'static str) -> Result<(), String> {
        if flag.choices.contains(value) {
            Ok(())
        } else {
            Err(choices_reason(flag))
        }
    }
}

/// `expected one of "a", "b"`.
fn choices_reason(flag: &Flag<Choice>) -> String {
    let list: Vec<String> = flag.choices.iter().map(|c| format!("{c:?}")).collect();
    format!("expected one of {}", list.join(", "))
}

/// `a == b` in a `const fn`.
const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl Flag<Choice> {
    /// Panics at compile time (the flag is built in a `static` initializer) if `default` is not one
    /// of `choices`.
    #[doc(hidden)]
    pub const fn __new(
        name: &'static str,
        help: &'static str,
        module_path: &'static str,
        default: &'static str,
        choices: &'static [&'static str],
        validator: Option<Validator<&'static str>>,
        reloadable: bool,
    ) -> Self {
        let mut i = 0;
        while i < choices.len() && !const_str_eq(choices[i], default) {
            i += 1;
        }
        assert!(
            i < choices.len(),
            "define_flag!: the default of a Choice flag must be one of its choices"
        );
        let storage = AtomicUsize::new(i);
        Flag::from_parts(
            name,
            help,
            module_path,
            default,
            choices,
            validator,
            reloadable,
            storage,
        )
    }
    #[doc(hidden)]
    pub const fn __validator(f: Validator<&'static str>) -> Validator<&'static str> {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_str_eq_compares_bytes() {
        assert!(const_str_eq("large", "large"));
        assert!(!const_str_eq("large", "larger"));
        assert!(!const_str_eq("huge", "hugs"));
        assert!(const_str_eq("", ""));
    }

    #[test]
    fn integers_parse_decimal_and_hex_with_range_errors() {
        let p = |t: &str| parse_radix(t, u32::from_str_radix, "expected", "u32", &0, &u32::MAX);
        assert_eq!(p("42"), Ok(42));
        assert_eq!(p("0x2A"), Ok(42));
        assert_eq!(p("0X2a"), Ok(42));
        assert_eq!(p("0x"), Err("expected".to_owned()));
        assert_eq!(p("1e3"), Err("expected".to_owned()));
        assert_eq!(
            p("0x1_0000_0000".replace('_', "").as_str()),
            Err("expected, and this is out of range for u32 (0..=4294967295)".to_owned())
        );
    }
}
