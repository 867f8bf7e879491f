//! Flags: one gflags-style registry of named, typed, validated settings for every crate of the
//! workspace (brpc's gflags; the `/flags` page lists and changes them).
//!
//! # Model
//!
//! A flag is a `static` [`Flag<T>`] defined with [`define_flag!`](crate::define_flag) in any crate.
//! It has a name (the static's identifier in lower case), a type, a default, a help text, an
//! optional validator and a *reloadable* bit. Code reads it through the static ([`Flag::get`]: one
//! relaxed atomic load for numbers, bools and choices); everything else goes by name:
//! [`list`], [`get`], [`set`], [`reload`], [`parse_args`], [`init_from_env`].
//!
//! # Three sources, and their precedence
//!
//! 1. the default in the definition;
//! 2. the environment: `SPINDLE_<NAME>` (e.g. `SPINDLE_FIBER_CONCURRENCY=4`), applied by
//!    [`init_from_env`];
//! 3. command-line style arguments (`--fiber_concurrency=4`), applied by [`parse_args`];
//! 4. code: [`Flag::set`] / [`set`], and at run time [`reload`] (the `/flags` page).
//!
//! Every source simply sets the value, so the last write wins; [`init`] applies the environment
//! then the arguments, which gives the order above (command line beats environment). Call it first
//! thing in `main`, before starting the runtime.
//!
//! # Reloadable and frozen
//!
//! A *reloadable* flag may change at any time; its consumer re-reads it (e.g. every time it makes
//! a decision). A flag that is *not* reloadable is read once by its consumer when it starts (the
//! worker count, stack sizes): the consumer reads it with [`Flag::freeze`], which returns the value
//! and freezes the flag. From then on every change is refused with [`FlagError::Frozen`] naming the
//! consumer, instead of silently doing nothing. Before the freeze, a non-reloadable flag can be
//! set from any source. [`reload`], the run-time path used by the `/flags` page, refuses
//! non-reloadable flags outright ([`FlagError::NotReloadable`]). A consumer that stops may
//! [`Flag::unfreeze`].
//!
//! # Why `inventory` for registration
//!
//! Each `define_flag!` hands a reference to its static to the [`inventory`] crate (dtolnay's,
//! widely used and maintained). Registration must work across crates with no central list and no
//! call from `main`: an rpc or rdma flag must appear in [`list`] and be settable from the command
//! line even if nothing has touched it yet. The alternatives:
//! - registering on first use (a `Lazy` per flag) misses flags nobody used yet — exactly the ones
//!   a user wants to set before start;
//! - `linkme` distributed slices need no code before `main` at all, but rely on linker section
//!   start/stop symbols that some targets and linker setups do not provide;
//! - `ctor` runs arbitrary user code before `main` (allocation, panics, static-init order).
//!
//! `inventory`'s only work before `main` is a constructor per flag that pushes a `static` node onto
//! a lock-free list: no allocation, no user code, cannot fail, order-independent. Everything else
//! (sorting, lookup, parsing) happens after `main` starts, when a name-based function is called.
//!
//! # Errors
//!
//! Every failure is a [`FlagError`] whose message names the flag as typed on the command line, e.g.
//! `invalid value "abc" for flag --fiber_concurrency: expected an unsigned integer`; a validator's
//! `Err` text is the reason. An environment error also names the variable.
//!
//! # Example
//!
//! ```
//! use spindle_runtime::{define_flag, flags};
//!
//! define_flag!(pub static ECHO_ATTACHMENT: bool = true, "echo the request attachment",
//!              reloadable = true);
//! define_flag!(pub static WORKERS: usize = 0, "worker threads, 0 = number of cores",
//!              validator = |v| if *v > 1024 { Err("at most 1024".into()) } else { Ok(()) });
//!
//! // In main: environment, then command line; the rest are positional arguments.
//! let rest = flags::init(["prog", "--workers=4", "--noecho_attachment", "input.txt"]).unwrap();
//! assert_eq!(rest, ["prog", "input.txt"]);
//! assert_eq!(WORKERS.get(), 4);
//! assert!(!ECHO_ATTACHMENT.get());
//!
//! // The consumer reads a non-reloadable flag once at start and freezes it.
//! let n = WORKERS.freeze("the worker pool");
//! assert_eq!(n, 4);
//! assert!(WORKERS.set(8).is_err());
//! assert!(flags::reload("echo_attachment", "true").is_ok());
//! assert_eq!(flags::get("echo_attachment").unwrap(), "true");
//! ```

mod define;
mod error;
mod flag;
mod registry;
pub mod runtime_flags;
mod sources;
mod types;

pub use error::FlagError;
pub use flag::{Flag, Validator};
pub use types::{Choice, FlagType};

/// Prefix of the environment variables read by [`init_from_env`].
pub const ENV_PREFIX: &str = "SPINDLE_";

/// What [`list`] and [`info`] report about one flag.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlagInfo {
    /// The name, e.g. `fiber_concurrency`.
    pub name: &'static str,
    /// The type: `bool`, `i32`, `i64`, `u32`, `u64`, `usize`, `f64`, `string` or `choice`.
    pub type_name: &'static str,
    /// The current value as text (parses back to the same value).
    pub value: String,
    /// The default as text.
    pub default: String,
    /// The help text.
    pub help: &'static str,
    /// Whether it may be changed while its consumer runs.
    pub reloadable: bool,
    /// Whether a consumer froze it (see [`Flag::freeze`]).
    pub frozen: bool,
    /// `module_path!()` of the definition; the first segment is the defining crate.
    pub module_path: &'static str,
    /// The allowed values of a `choice` flag; empty otherwise.
    pub choices: &'static [&'static str],
    /// The environment variable that sets it, e.g. `SPINDLE_FIBER_CONCURRENCY`.
    pub env_var: String,
}

impl FlagInfo {
    /// The crate that defines the flag (first segment of [`FlagInfo::module_path`]).
    pub fn crate_name(&self) -> &'static str {
        self.module_path
            .split("::")
            .next()
            .unwrap_or(self.module_path)
    }

    /// Whether the current value equals the default.
    pub fn is_default(&self) -> bool {
        self.value == self.default
    }
}

/// Every flag linked into the program, sorted by name (then module path, should two crates define
/// the same name).
pub fn list() -> Vec<FlagInfo> {
    registry::all().into_iter().map(|f| f.info()).collect()
}

/// What [`list`] reports about the flag called `name`.
pub fn info(name: &str) -> Result<FlagInfo, FlagError> {
    registry::lookup(name).map(|f| f.info())
}

/// The current value of the flag called `name`, as text.
pub fn get(name: &str) -> Result<String, FlagError> {
    registry::lookup(name).map(|f| f.value_string())
}

/// Sets the flag called `name` from text, from code (before start, any flag; after its consumer
/// froze it, only a reloadable one). Errors: `Unknown`, `Ambiguous`, `InvalidValue`, `Frozen`.
pub fn set(name: &str, value: &str) -> Result<(), FlagError> {
    registry::lookup(name)?.set_text(value)
}

/// Changes the flag called `name` at run time, as the `/flags` page does: like [`set`], but a flag
/// that is not reloadable is refused with [`FlagError::NotReloadable`] even if not frozen.
pub fn reload(name: &str, value: &str) -> Result<(), FlagError> {
    let flag = registry::lookup(name)?;
    if !flag.is_reloadable() {
        return Err(FlagError::NotReloadable { flag: flag.name() });
    }
    flag.set_text(value)
}

/// Applies command-line style arguments and returns the others (including `args[0]`, the program
/// name, if given), in order.
///
/// Accepted forms: `--name=value`, `--name value` (the next argument is the value unless it
/// starts with `--`), and for `bool` flags `--name` (true) and `--noname` (false). A lone `--`
/// ends flag parsing; everything after it is returned as is. Any other argument (including `-x`
/// and `-`) is returned. An unknown `--flag` is refused with [`FlagError::Unknown`] (with a
/// suggestion for typos). All values are checked before any is applied: on error no flag changes.
///
/// ```
/// spindle_runtime::define_flag!(static PORT: u32 = 8000, "listen port");
/// let rest = spindle_runtime::flags::parse_args(["prog", "--port", "9000", "x"]).unwrap();
/// assert_eq!((PORT.get(), rest), (9000, vec!["prog".to_string(), "x".to_string()]));
/// assert!(spindle_runtime::flags::parse_args(["--prot=1"]).is_err());
/// ```
pub fn parse_args<I, S>(args: I) -> Result<Vec<String>, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    sources::parse_args(args)
}

/// Applies every `SPINDLE_<NAME>` variable of the process environment that names a registered
/// flag; returns how many were applied. A bad value is a [`FlagError::Env`] naming the variable
/// and the flag; all are checked before any is applied. Variables with the prefix that name no
/// flag are ignored (other tools may share the prefix).
pub fn init_from_env() -> Result<usize, FlagError> {
    sources::init_from_env()
}

/// [`init_from_env`] over the given `(variable, value)` pairs instead of the process environment
/// (for tests, or an environment captured elsewhere).
///
/// ```
/// spindle_runtime::define_flag!(static RETRIES: i32 = 3, "retries");
/// let n = spindle_runtime::flags::init_from_env_vars([("SPINDLE_RETRIES", "5"), ("HOME", "/")]);
/// assert_eq!((n.unwrap(), RETRIES.get()), (1, 5));
/// ```
pub fn init_from_env_vars<I, K, V>(vars: I) -> Result<usize, FlagError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    sources::init_from_env_vars(vars)
}

/// The usual start of `main`: [`init_from_env`], then [`parse_args`] (so the command line overrides
/// the environment); returns the non-flag arguments.
pub fn init<I, S>(args: I) -> Result<Vec<String>, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    init_from_env()?;
    parse_args(args)
}

/// Checks that every registered flag's default passes its own validator; a test helper for
/// crates that define flags (a default that fails its validator is a bug in the definition).
pub fn check_defaults() -> Result<(), FlagError> {
    registry::all()
        .into_iter()
        .try_for_each(|f| f.check_default())
}

/// `SPINDLE_` + the name in upper case.
pub(crate) fn env_var_name(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// Items used by `define_flag!`'s expansion; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use super::registry::Registration;
    pub use inventory;

    /// ASCII lower case of `s` as an array (so the name is computed at compile time).
    pub const fn lower_ascii<const N: usize>(s: &str) -> [u8; N] {
        let bytes = s.as_bytes();
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            out[i] = bytes[i].to_ascii_lowercase();
            i += 1;
        }
        out
    }

    /// `bytes` as `&str` (they came from an identifier, so they are UTF-8).
    pub const fn as_str(bytes: &'static [u8]) -> &'static str {
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => panic!("flag name is not UTF-8"),
        }
    }
}
