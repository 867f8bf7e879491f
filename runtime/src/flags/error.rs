//! [`FlagError`]: every way reading or changing a flag can fail. Each message names the flag (as
//! `--name`) or, for the environment, the variable and the flag.
use std::fmt;

/// Why a flag could not be found, parsed or changed.
///
/// Every variant's `Display` names the flag at fault the way a user would type it on the command
/// line (`--fiber_concurrency`), so the message can be shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlagError {
    /// No flag of this name is linked into the program.
    Unknown {
        /// The name as given (without `--`).
        name: String,
        /// A registered flag with a similar name, if there is one.
        suggestion: Option<&'static str>,
    },
    /// Two or more flags of this name are linked into the program (defined in different modules);
    /// it cannot be looked up by name until one is renamed.
    Ambiguous {
        /// The flag name.
        flag: &'static str,
        /// Module paths of the definitions.
        modules: Vec<&'static str>,
    },
    /// The text is not a valid value for the flag: it does not parse as the flag's type, is not one
    /// of its choices, or its validator refused it.
    InvalidValue {
        /// The flag name.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused (the parser's or the validator's reason).
        reason: String,
    },
    /// A non-boolean flag was given on the command line without a value.
    MissingValue {
        /// The flag name.
        flag: &'static str,
    },
    /// The flag is not reloadable and its consumer has already read it at start
    /// ([`Flag::freeze`](super::Flag::freeze)); changing it now would have no effect, so it is refused.
    Frozen {
        /// The flag name.
        flag: &'static str,
        /// Who froze it (the consumer's description, e.g. `"the fiber scheduler"`).
        by: &'static str,
    },
    /// [`reload`](super::reload) (the run-time path, e.g. the `/flags` page) was asked to change a
    /// flag that is not reloadable.
    NotReloadable {
        /// The flag name.
        flag: &'static str,
    },
    /// A `SPINDLE_<NAME>` environment variable holds a bad value; `source` says why.
    Env {
        /// The variable, e.g. `SPINDLE_FIBER_CONCURRENCY`.
        var: String,
        /// The underlying error (usually [`FlagError::InvalidValue`]).
        source: Box<FlagError>,
    },
}

impl FlagError {
    /// The name of the flag at fault (for `Unknown`, the name as given).
    pub fn flag(&self) -> &str {
        match self {
            FlagError::Unknown { name, .. } => name,
            FlagError::Ambiguous { flag, .. }
            | FlagError::InvalidValue { flag, .. }
            | FlagError::MissingValue { flag }
            | FlagError::Frozen { flag, .. }
            | FlagError::NotReloadable { flag } => flag,
            FlagError::Env { source, .. } => source.flag(),
        }
    }
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagError::Unknown { name, suggestion } => {
                write!(f, "unknown flag --{name}")?;
                if let Some(s) = suggestion {
                    write!(f, " (did you mean --{s}?)")?;
                }
                Ok(())
            }
            FlagError::Ambiguous { flag, modules } => write!(
                f,
                "flag --{flag} is defined more than once (in {}); rename one of them",
                modules.join(", ")
            ),
            FlagError::InvalidValue {
                flag,
                value,
                reason,
            } => {
                write!(f, "invalid value {value:?} for flag --{flag}: {reason}")
            }
            FlagError::MissingValue { flag } => {
                write!(
                    f,
                    "flag --{flag} needs a value (--{flag}=VALUE or --{flag} VALUE)"
                )
            }
            FlagError::Frozen { flag, by } => write!(
                f,
                "flag --{flag} is not reloadable and was already read by {by} when it started; \
                 set it before that (command line --{flag}=VALUE or environment {})",
                super::env_var_name(flag)
            ),
            FlagError::NotReloadable { flag } => write!(
                f,
                "flag --{flag} is not reloadable: it can only be set before the subsystem that \
                 reads it starts"
            ),
            FlagError::Env { var, source } => write!(f, "environment variable {var}: {source}"),
        }
    }
}

impl std::error::Error for FlagError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FlagError::Env { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
