//! Prometheus text exposition (brpc's `/brpc_metrics`), format version 0.0.4.
//!
//! Every numeric variable of a registry becomes a `gauge` family (brpc cannot tell counters from
//! gauges by name either); text variables are left out; a [`crate::LatencyRecorder`] becomes a
//! `summary` with `quantile` labels 0.5, 0.9, 0.99, 0.999 and 1 (the window's maximum), and
//! `_sum` / `_count` samples that are running totals since creation. brpc also prints a
//! `quantile="avg"` sample, which strict parsers reject (a quantile must be a number); Spindle
//! reports the mean as the separate `<prefix>_latency` gauge instead.
//!
//! A name that does not start with a letter, `_` or `:` gets a leading `_`; a family whose name
//! was already written (e.g. a gauge named like a summary's `_sum`) is skipped, so the output is
//! always valid.

use crate::name::WildcardFilter;
use crate::registry::{Metric, Registry, Value};
use std::collections::HashSet;
use std::fmt::Write;

/// The content type to serve the output with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Renders every exposed numeric variable of `registry` in the text exposition format.
pub fn render(registry: &Registry) -> String {
    render_filtered(registry, &WildcardFilter::new(""))
}

/// Renders the variables of `registry` that match `filter`.
pub fn render_filtered(registry: &Registry, filter: &WildcardFilter) -> String {
    let mut out = String::new();
    let mut written: HashSet<String> = HashSet::new();
    registry.for_each(filter, |name, var| {
        let name = metric_name(name);
        match var.metric() {
            Metric::Hidden | Metric::Gauge(Value::Text(_)) => {}
            Metric::Gauge(v) => {
                if claim(&mut written, &[&name]) {
                    let _ = writeln!(out, "# TYPE {name} gauge");
                    let _ = writeln!(out, "{name} {}", number(v.as_f64().unwrap_or(0.0)));
                }
            }
            Metric::Summary(s) => {
                let family = name.strip_suffix("_count").unwrap_or(&name).to_string();
                let sum = format!("{family}_sum");
                let count = format!("{family}_count");
                if claim(&mut written, &[&family, &sum, &count]) {
                    let _ = writeln!(out, "# TYPE {family} summary");
                    for (q, v) in &s.quantiles {
                        let _ = writeln!(
                            out,
                            "{family}{{quantile=\"{}\"}} {}",
                            number(*q),
                            number(*v)
                        );
                    }
                    let _ = writeln!(out, "{sum} {}", number(s.sum));
                    let _ = writeln!(out, "{count} {}", s.count);
                }
            }
        }
    });
    out
}

/// Reserves sample names; false (and nothing reserved) if any is taken.
fn claim(written: &mut HashSet<String>, names: &[&str]) -> bool {
    if names.iter().any(|n| written.contains(*n)) {
        return false;
    }
    written.extend(names.iter().map(|n| n.to_string()));
    true
}

/// A valid metric name for a registry name (which is already `[a-z0-9_]+`).
fn metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':') {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// A sample value as the format spells it (`NaN`, `+Inf`, `-Inf`, integers without a point).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(metric_name("8000_qps"), "_8000_qps");
        assert_eq!(metric_name("a_b"), "a_b");
    }
}
