//! Variable names and name filters, as bvar does them.
//!
//! Names are normalised by [`to_underscored_name`]; lists are filtered by [`WildcardFilter`]
//! (brpc's `/vars/<filter>`).

/// Normalises a variable name the way bvar's `to_underscored_name` does:
/// - ASCII letters are lower-cased; an upper-case letter that follows a character which is not
///   upper-case gets a `_` before it (`EchoService` → `echo_service`, `HTTPServer` →
///   `httpserver`, `fooBar` → `foo_bar`), unless the name so far ends with `_`;
/// - ASCII digits are kept;
/// - any other character becomes `_`, and runs of such characters collapse into one `_`
///   (`a.b::c` → `a_b_c`, ` x` → `_x`).
pub fn to_underscored_name(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 8);
    let mut prev: Option<char> = None;
    for c in src.chars() {
        if c.is_ascii_alphabetic() {
            if c.is_ascii_uppercase() {
                let after_non_upper = prev.is_some_and(|p| !p.is_ascii_uppercase());
                if after_non_upper && !out.ends_with('_') {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        } else if c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
        prev = Some(c);
    }
    out
}

/// A list of name patterns like brpc's `/vars` filter: patterns separated by `,` or `;`; `*`
/// matches any run of characters and the question mark (`?` by default; brpc's `/vars` page uses
/// `$` because `?` starts a URL query) matches one character. Patterns without wildcards match
/// exactly. An empty list matches every name.
#[derive(Clone, Debug)]
pub struct WildcardFilter {
    /// Patterns with a wildcard.
    wildcards: Vec<String>,
    /// Patterns without one.
    exact: Vec<String>,
    /// The single-character wildcard.
    question_mark: char,
}

impl WildcardFilter {
    /// Parses `patterns` with `?` as the single-character wildcard.
    pub fn new(patterns: &str) -> Self {
        Self::with_question_mark(patterns, '?')
    }

    /// Parses `patterns` with `question_mark` as the single-character wildcard.
    pub fn with_question_mark(patterns: &str, question_mark: char) -> Self {
        let mut f = WildcardFilter {
            wildcards: Vec::new(),
            exact: Vec::new(),
            question_mark,
        };
        for p in patterns.split([',', ';']).map(str::trim) {
            if p.is_empty() {
                continue;
            }
            if p.contains('*') || p.contains(question_mark) {
                f.wildcards.push(p.to_string());
            } else {
                f.exact.push(p.to_string());
            }
        }
        f
    }

    /// True if the filter has no pattern (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.wildcards.is_empty() && self.exact.is_empty()
    }

    /// True if `name` matches one of the patterns, or the filter is empty.
    pub fn matches(&self, name: &str) -> bool {
        self.is_empty()
            || self.exact.iter().any(|e| e == name)
            || self
                .wildcards
                .iter()
                .any(|w| wildcard_match(w, name, self.question_mark))
    }
}

/// Glob match of `name` against `pattern` (`*` any run, `question_mark` one character), in
/// linear time with one backtrack point.
fn wildcard_match(pattern: &str, name: &str, question_mark: char) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == question_mark || p[pi] == s[si]) && p[pi] != '*' {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_bvar() {
        assert_eq!(to_underscored_name("EchoService"), "echo_service");
        assert_eq!(to_underscored_name("fooBar"), "foo_bar");
        assert_eq!(to_underscored_name("HTTPServer"), "httpserver");
        assert_eq!(
            to_underscored_name("example.EchoService.Echo"),
            "example_echo_service_echo"
        );
        assert_eq!(to_underscored_name("a::b--c"), "a_b_c");
        assert_eq!(to_underscored_name("foo_Bar"), "foo_bar");
        assert_eq!(to_underscored_name(" x"), "_x");
        assert_eq!(to_underscored_name("a1B"), "a1_b");
        assert_eq!(to_underscored_name("Qps"), "qps");
        assert_eq!(to_underscored_name("naïve"), "na_ve");
    }

    #[test]
    fn wildcards() {
        let f = WildcardFilter::new("rpc_*_qps;process_?pu*, exact_name");
        assert!(f.matches("rpc_server_qps"));
        assert!(f.matches("rpc__qps"));
        assert!(!f.matches("rpc_server_count"));
        assert!(f.matches("process_cpu_usage"));
        assert!(!f.matches("process_memory"));
        assert!(f.matches("exact_name"));
        assert!(!f.matches("exact_name2"));
        assert!(WildcardFilter::new("").matches("anything"));
        assert!(WildcardFilter::new("*").matches(""));
        assert!(WildcardFilter::with_question_mark("a$c", '$').matches("abc"));
        assert!(!WildcardFilter::with_question_mark("a$c", '$').matches("a$cc"));
        assert!(WildcardFilter::new("*a*b*").matches("xxaxxbxx"));
        assert!(!WildcardFilter::new("*a*b").matches("xxaxxbxx"));
    }
}
