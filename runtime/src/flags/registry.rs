//! The registry of every flag linked into the program, and name lookup.
//!
//! Each [`define_flag!`](crate::define_flag) submits a [`Registration`] (a reference to its
//! static) to an [`inventory`] collection. The collection is walked on every name-based call
//! rather than cached, so a flag in a library loaded later (`dlopen`) is seen as soon as it is
//! loaded; with the tens to hundreds of flags a program has, a walk costs microseconds, and
//! name-based calls are for configuration, not hot paths (hot paths hold the static).
use super::flag::AnyFlag;
use super::FlagError;

/// One registered flag. Built by `define_flag!`.
#[doc(hidden)]
pub struct Registration(pub &'static dyn AnyFlag);

inventory::collect!(Registration);

/// Every registered flag, sorted by name then module path.
pub(crate) fn all() -> Vec<&'static dyn AnyFlag> {
    let mut v: Vec<&'static dyn AnyFlag> = inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    v.sort_by_key(|f| (f.name(), f.module_path()));
    v
}

/// The flag called `name`, or `Unknown` (with a suggestion) / `Ambiguous`.
pub(crate) fn lookup(name: &str) -> Result<&'static dyn AnyFlag, FlagError> {
    let mut found = inventory::iter::<Registration>
        .into_iter()
        .filter(|r| r.0.name() == name);
    match (found.next(), found.next()) {
        (Some(r), None) => Ok(r.0),
        (Some(first), Some(second)) => {
            let mut modules = vec![first.0.module_path(), second.0.module_path()];
            modules.extend(found.map(|r| r.0.module_path()));
            modules.sort_unstable();
            Err(FlagError::Ambiguous {
                flag: first.0.name(),
                modules,
            })
        }
        (None, _) => Err(FlagError::Unknown {
            name: name.to_owned(),
            suggestion: suggest(name),
        }),
    }
}

/// The registered name closest to `name` if it is within a small edit distance (typos).
fn suggest(name: &str) -> Option<&'static str> {
    let limit = (name.len() / 4).clamp(1, 3);
    inventory::iter::<Registration>
        .into_iter()
        .map(|r| (edit_distance(name, r.0.name()), r.0.name()))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, n)| n)
}

/// Levenshtein distance over bytes (flag names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_typos() {
        assert_eq!(edit_distance("fiber_concurency", "fiber_concurrency"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
