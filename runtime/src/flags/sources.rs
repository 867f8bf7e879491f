//! The two outside sources of flag values: command-line style arguments and the environment.
//!
//! Both are all-or-nothing: every value is parsed, validated and checked against frozen flags
//! first, and only if all pass are they applied (in the order given), so a typo never leaves the
//! program half-configured.
use super::flag::AnyFlag;
use super::{registry, FlagError};

/// Applies checked `(flag, value)` pairs; `wrap` turns an error into the caller's form.
fn apply_all(
    pending: &[(&'static dyn AnyFlag, String)],
    wrap: impl Fn(usize, FlagError) -> FlagError,
) -> Result<(), FlagError> {
    for (i, (flag, value)) in pending.iter().enumerate() {
        flag.check_text(value).map_err(|e| wrap(i, e))?;
    }
    for (i, (flag, value)) in pending.iter().enumerate() {
        // Only a freeze racing with this call can fail here.
        flag.set_text(value).map_err(|e| wrap(i, e))?;
    }
    Ok(())
}

/// See [`super::parse_args`].
pub(crate) fn parse_args<I, S>(args: I) -> Result<Vec<String>, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut rest = Vec::new();
    let mut pending: Vec<(&'static dyn AnyFlag, String)> = Vec::new();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        if arg == "--" {
            rest.extend(args);
            break;
        }
        let Some(body) = arg.strip_prefix("--") else {
            rest.push(arg);
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let flag = match registry::lookup(name) {
            Ok(flag) => flag,
            // `--noNAME` for a boolean flag NAME.
            Err(err @ FlagError::Unknown { .. }) => match name.strip_prefix("no") {
                Some(base) if value.is_none() => match registry::lookup(base) {
                    Ok(flag) if flag.is_bool() => {
                        pending.push((flag, "false".to_owned()));
                        continue;
                    }
                    _ => return Err(err),
                },
                _ => return Err(err),
            },
            Err(err) => return Err(err),
        };
        let value = match value {
            Some(v) => v.to_owned(),
            None if flag.is_bool() => "true".to_owned(),
            None => match args.next() {
                Some(v) if !v.starts_with("--") => v,
                _ => return Err(FlagError::MissingValue { flag: flag.name() }),
            },
        };
        pending.push((flag, value));
    }
    apply_all(&pending, |_, e| e)?;
    Ok(rest)
}

/// See [`super::init_from_env_vars`].
pub(crate) fn init_from_env_vars<I, K, V>(vars: I) -> Result<usize, FlagError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut pending: Vec<(&'static dyn AnyFlag, String)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (key, value) in vars {
        let key = key.as_ref();
        let Some(upper) = key.strip_prefix(super::ENV_PREFIX) else {
            continue;
        };
        // Variables are upper case; flag names lower case. Other SPINDLE_* variables are not ours.
        if upper.bytes().any(|b| b.is_ascii_lowercase()) {
            continue;
        }
        match registry::lookup(&upper.to_ascii_lowercase()) {
            Ok(flag) => {
                pending.push((flag, value.as_ref().to_owned()));
                names.push(key.to_owned());
            }
            Err(FlagError::Unknown { .. }) => continue,
            Err(e) => {
                return Err(FlagError::Env {
                    var: key.to_owned(),
                    source: Box::new(e),
                })
            }
        }
    }
    apply_all(&pending, |i, e| FlagError::Env {
        var: names[i].clone(),
        source: Box::new(e),
    })?;
    Ok(pending.len())
}

/// See [`super::init_from_env`].
pub(crate) fn init_from_env() -> Result<usize, FlagError> {
    let mut vars = Vec::new();
    for flag in registry::all() {
        let var = super::env_var_name(flag.name());
        match std::env::var_os(&var) {
            None => {}
            Some(os) => match os.into_string() {
                Ok(value) => vars.push((var, value)),
                Err(os) => {
                    let source = FlagError::InvalidValue {
                        flag: flag.name(),
                        value: os.to_string_lossy().into_owned(),
                        reason: "not valid UTF-8".to_owned(),
                    };
                    return Err(FlagError::Env {
                        var,
                        source: Box::new(source),
                    });
                }
            },
        }
    }
    init_from_env_vars(vars)
}
