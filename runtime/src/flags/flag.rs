//! [`Flag<T>`]: one flag — its metadata, its current value and its frozen state.
//!
//! Invariants:
//! - the current value always parsed and passed the validator (the default is checked by the
//!   registry's tests, see `flags::check_defaults`);
//! - a change (`set*`) and [`Flag::freeze`] are serialised by the `frozen_by` mutex, so a set that
//!   returned `Ok` happened before the freeze and its value is the one the consumer read; a set
//!   that lost the race is refused with [`FlagError::Frozen`]. Plain reads ([`Flag::get`]) never
//!   take that mutex.
use std::fmt;
use std::sync::{Mutex, PoisonError};

use super::types::FlagType;
use super::FlagError;

/// A validator: returns `Err(reason)` to refuse a value. It sees only the candidate value; the
/// reason is shown after `invalid value "..." for flag --name: `.
pub type Validator<V> = fn(&V) -> Result<(), String>;

/// One flag of type `T` (`bool`, `i32`, `i64`, `u32`, `u64`, `usize`, `f64`, `String` or
/// [`Choice`](super::Choice)). Define it with [`define_flag!`](crate::define_flag), which also
/// registers it; a `Flag` is meant to live in a `static`.
pub struct Flag<T: FlagType> {
    /// The flag's name: the static's identifier in lower case (`fiber_concurrency`).
    pub(crate) name: &'static str,
    /// One-line help text.
    pub(crate) help: &'static str,
    /// `module_path!()` of the definition (its first segment is the defining crate).
    pub(crate) module_path: &'static str,
    /// The default, in its const form.
    pub(crate) default: T::Const,
    /// Allowed values (only [`Choice`](super::Choice) flags; empty otherwise).
    pub(crate) choices: &'static [&'static str],
    /// Extra check run on every new value.
    pub(crate) validator: Option<Validator<T::Value>>,
    /// May be changed while its consumer runs.
    pub(crate) reloadable: bool,
    /// The current value.
    pub(crate) storage: T::Storage,
    /// `Some(who)` once a consumer froze the flag; also serialises set against freeze.
    pub(crate) frozen_by: Mutex<Option<&'static str>>,
}

impl<T: FlagType> Flag<T> {
    /// Builds a flag; used by `define_flag!` (through each type's `__new`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) const fn from_parts(
        name: &'static str,
        help: &'static str,
        module_path: &'static str,
        default: T::Const,
        choices: &'static [&'static str],
        validator: Option<Validator<T::Value>>,
        reloadable: bool,
        storage: T::Storage,
    ) -> Self {
        Flag {
            name,
            help,
            module_path,
            default,
            choices,
            validator,
            reloadable,
            storage,
            frozen_by: Mutex::new(None),
        }
    }

    /// The current value. For integers, `bool`, `f64` and [`Choice`](super::Choice) this is one
    /// relaxed atomic load; for `String` a read lock and a clone (see `Flag::<String>::with` to avoid
    /// the clone). A flag's value carries no other data with it, so the load is `Relaxed`.
    #[inline]
    pub fn get(&self) -> T::Value {
        T::load(self)
    }

    /// Sets the value from code. Refused with [`FlagError::InvalidValue`] if the validator (or, for a
    /// [`Choice`](super::Choice), the list of choices) refuses it, and with [`FlagError::Frozen`] if
    /// the flag is not reloadable and its consumer already froze it. On error nothing changes.
    pub fn set(&self, value: T::Value) -> Result<(), FlagError> {
        self.validate(&value)?;
        self.store_checked(value)
    }

    /// Parses `text` as this flag's type (the same syntax as the command line and environment),
    /// validates it and sets it; errors as for [`Flag::set`].
    pub fn set_str(&self, text: &str) -> Result<(), FlagError> {
        let value = self.parse_checked(text)?;
        self.store_checked(value)
    }

    /// Reads the value for a consumer that starts now and will not look at the flag again: if the
    /// flag is not reloadable, later changes are refused with [`FlagError::Frozen`] naming `by`
    /// (e.g. `"the fiber scheduler"`). A reloadable flag is not frozen (its consumer re-reads it);
    /// its value is simply returned. Freezing twice keeps the first `by`.
    ///
    /// ```
    /// use spindle_runtime::flags::FlagError;
    /// spindle_runtime::define_flag!(static POOL_SIZE: usize = 4, "threads of the pool");
    ///
    /// POOL_SIZE.set(8).unwrap(); // before start: fine
    /// let n = POOL_SIZE.freeze("the pool"); // the pool starts with 8 threads
    /// assert_eq!(n, 8);
    /// let err = POOL_SIZE.set(16).unwrap_err();
    /// assert_eq!(err, FlagError::Frozen { flag: "pool_size", by: "the pool" });
    /// ```
    pub fn freeze(&self, by: &'static str) -> T::Value {
        let mut frozen = self
            .frozen_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.reloadable && frozen.is_none() {
            *frozen = Some(by);
        }
        T::load(self)
    }

    /// Lifts a freeze: for a consumer that stopped and will read the flag again when it restarts,
    /// and for tests.
    pub fn unfreeze(&self) {
        *self
            .frozen_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether a consumer froze the flag (see [`Flag::freeze`]).
    pub fn is_frozen(&self) -> bool {
        self.frozen_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The flag's name, e.g. `fiber_concurrency` (the static's identifier in lower case).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The help text.
    pub fn help(&self) -> &'static str {
        self.help
    }

    /// The default value.
    pub fn default_value(&self) -> T::Value {
        T::from_const(self, &self.default)
    }

    /// Whether the flag may be changed while its consumer runs (e.g. from the `/flags` page).
    pub fn is_reloadable(&self) -> bool {
        self.reloadable
    }

    /// `module_path!()` where the flag is defined; the first segment is the defining crate.
    pub fn module_path(&self) -> &'static str {
        self.module_path
    }

    /// The allowed values of a [`Choice`](super::Choice) flag; empty for other types.
    pub fn choices(&self) -> &'static [&'static str] {
        self.choices
    }

    /// The environment variable read by [`init_from_env`](super::init_from_env):
    /// `SPINDLE_` and the name in upper case.
    pub fn env_var(&self) -> String {
        super::env_var_name(self.name)
    }

    /// Everything [`list`](super::list) reports about this flag.
    pub fn info(&self) -> super::FlagInfo {
        super::FlagInfo {
            name: self.name,
            type_name: T::TYPE_NAME,
            value: T::format(&T::load(self)),
            default: T::format(&self.default_value()),
            help: self.help,
            reloadable: self.reloadable,
            frozen: self.is_frozen(),
            module_path: self.module_path,
            choices: self.choices,
            env_var: self.env_var(),
        }
    }

    /// Runs the type's own check (choices) and the validator.
    fn validate(&self, value: &T::Value) -> Result<(), FlagError> {
        let check = T::check(self, value).and_then(|()| match self.validator {
            Some(v) => v(value),
            None => Ok(()),
        });
        check.map_err(|reason| FlagError::InvalidValue {
            flag: self.name,
            value: T::format(value),
            reason,
        })
    }

    /// Parses and validates `text`.
    pub(crate) fn parse_checked(&self, text: &str) -> Result<T::Value, FlagError> {
        let value = T::parse(self, text).map_err(|reason| FlagError::InvalidValue {
            flag: self.name,
            value: text.to_owned(),
            reason,
        })?;
        self.validate(&value).map_err(|e| match e {
            // Report the text as the user wrote it.
            FlagError::InvalidValue { flag, reason, .. } => FlagError::InvalidValue {
                flag,
                value: text.to_owned(),
                reason,
            },
            other => other,
        })?;
        Ok(value)
    }

    /// `Err(Frozen)` if a change would be refused now.
    pub(crate) fn check_not_frozen(&self) -> Result<(), FlagError> {
        match *self
            .frozen_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(by) => Err(FlagError::Frozen {
                flag: self.name,
                by,
            }),
            None => Ok(()),
        }
    }

    /// Stores an already validated value unless frozen (atomically with respect to `freeze`).
    fn store_checked(&self, value: T::Value) -> Result<(), FlagError> {
        let frozen = self
            .frozen_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(by) = *frozen {
            return Err(FlagError::Frozen {
                flag: self.name,
                by,
            });
        }
        T::store(self, value);
        Ok(())
    }
}

impl<T: FlagType> fmt::Debug for Flag<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flag")
            .field("name", &self.name)
            .field("type", &T::TYPE_NAME)
            .field("value", &T::format(&T::load(self)))
            .field("reloadable", &self.reloadable)
            .finish()
    }
}

/// The type-erased view of a flag that the registry works with.
#[doc(hidden)]
pub trait AnyFlag: Send + Sync {
    /// See [`Flag::name`].
    fn name(&self) -> &'static str;
    /// See [`Flag::module_path`].
    fn module_path(&self) -> &'static str;
    /// See [`Flag::is_reloadable`].
    fn is_reloadable(&self) -> bool;
    /// Whether the flag is a `bool` (may be given as `--name` / `--noname`).
    fn is_bool(&self) -> bool;
    /// See [`Flag::info`].
    fn info(&self) -> super::FlagInfo;
    /// The current value as text.
    fn value_string(&self) -> String;
    /// Whether [`AnyFlag::set_text`] would accept `text` now (parse, validate, not frozen).
    fn check_text(&self, text: &str) -> Result<(), FlagError>;
    /// See [`Flag::set_str`].
    fn set_text(&self, text: &str) -> Result<(), FlagError>;
    /// Whether the default passes the flag's own checks.
    fn check_default(&self) -> Result<(), FlagError>;
}

impl<T: FlagType> AnyFlag for Flag<T> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn module_path(&self) -> &'static str {
        self.module_path
    }
    fn is_reloadable(&self) -> bool {
        self.reloadable
    }
    fn is_bool(&self) -> bool {
        T::TYPE_NAME == "bool"
    }
    fn info(&self) -> super::FlagInfo {
        Flag::info(self)
    }
    fn value_string(&self) -> String {
        T::format(&T::load(self))
    }
    fn check_text(&self, text: &str) -> Result<(), FlagError> {
        self.parse_checked(text)?;
        self.check_not_frozen()
    }
    fn set_text(&self, text: &str) -> Result<(), FlagError> {
        self.set_str(text)
    }
    fn check_default(&self) -> Result<(), FlagError> {
        self.validate(&self.default_value())
    }
}
