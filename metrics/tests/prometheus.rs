//! Prometheus output parsed by a strict reader of the text exposition format (0.0.4).

use spindle_metrics::{
    expose_default_variables, prometheus, Adder, Collector, Exposable, FloatAdder, LatencyRecorder,
    PassiveStatus, Registry,
};
use std::collections::{BTreeMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One metric family: its `# TYPE` and samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

/// Parses and checks a text exposition; families by name.
///
/// Grammar (prometheus.io "Exposition formats", text format):
/// - lines end with `\n`; empty lines are ignored;
/// - `# HELP <name> <text>` and `# TYPE <name> <counter|gauge|histogram|summary|untyped>`;
///   other `#` lines are comments; at most one TYPE per name, before its first sample;
/// - a sample is `<name>[{<label>="<value>",...}] <float> [<timestamp>]`, names match
///   `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*` (not `__`-prefixed),
///   label values escape `\\`, `\"` and `\n`; floats may be `NaN`, `+Inf`, `-Inf`;
/// - samples of one family are contiguous and no name + label set repeats;
/// - a summary's `<name>` samples carry a numeric `quantile` label in 0..=1; it may have
///   `<name>_sum` and `<name>_count`.
fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("output does not end with a newline".into());
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen: HashSet<String> = HashSet::new();
    for (no, line) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line:?}", no + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut it = rest.trim_start().splitn(3, ' ');
            match it.next() {
                Some("TYPE") => {
                    let name = it.next().ok_or_else(|| err("TYPE without a name"))?;
                    let kind = it.next().ok_or_else(|| err("TYPE without a type"))?;
                    check_metric_name(name).map_err(|e| err(&e))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(err("unknown type"));
                    }
                    if families.contains_key(name) {
                        return Err(err("second TYPE line, or TYPE after samples"));
                    }
                    switch_family(&mut current, &mut finished, name).map_err(|e| err(&e))?;
                    families.insert(
                        name.into(),
                        Family {
                            kind: kind.into(),
                            samples: vec![],
                        },
                    );
                }
                Some("HELP") => {
                    let name = it.next().ok_or_else(|| err("HELP without a name"))?;
                    check_metric_name(name).map_err(|e| err(&e))?;
                }
                _ => {}
            }
            continue;
        }
        let sample = parse_sample(line).map_err(|e| err(&e))?;
        let family = family_of(&families, &sample.name);
        switch_family(&mut current, &mut finished, &family).map_err(|e| err(&e))?;
        let key = format!("{}{:?}", sample.name, sample.labels);
        if !seen.insert(key) {
            return Err(err("duplicate sample"));
        }
        let fam = families.entry(family.clone()).or_default();
        if fam.kind.is_empty() {
            fam.kind = "untyped".into();
        }
        if fam.kind == "summary" && sample.name == family {
            let q = sample
                .labels
                .get("quantile")
                .ok_or_else(|| err("summary sample without quantile"))?;
            let q = parse_float(q).map_err(|e| err(&e))?;
            if !(0.0..=1.0).contains(&q) {
                return Err(err("quantile out of 0..=1"));
            }
        }
        fam.samples.push(sample);
    }
    Ok(families)
}

/// The family a sample belongs to: a typed summary/histogram owning its suffixed samples.
fn family_of(families: &BTreeMap<String, Family>, name: &str) -> String {
    for suffix in ["_sum", "_count", "_bucket"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families
                .get(base)
                .is_some_and(|f| f.kind == "summary" || f.kind == "histogram")
            {
                return base.into();
            }
        }
    }
    name.into()
}

/// Moves to family `name`, refusing to come back to a finished one.
fn switch_family(
    current: &mut Option<String>,
    finished: &mut HashSet<String>,
    name: &str,
) -> Result<(), String> {
    if current.as_deref() == Some(name) {
        return Ok(());
    }
    if finished.contains(name) {
        return Err(format!("samples of family {name} are not contiguous"));
    }
    if let Some(old) = current.replace(name.into()) {
        finished.insert(old);
    }
    Ok(())
}

fn check_metric_name(n: &str) -> Result<(), String> {
    let ok = n.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if n.is_empty() || !ok {
        return Err(format!("bad metric name {n:?}"));
    }
    Ok(())
}

fn parse_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if s.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') => {
            Err(format!("bad float {s:?}"))
        }
        _ => s.parse().map_err(|_| format!("bad float {s:?}")),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or("sample without a value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let end;
        loop {
            // label name
            let start = match chars.peek() {
                Some(&(_, '}')) => {
                    end = chars.next().map(|(i, _)| i);
                    break;
                }
                Some(&(i, _)) => i,
                None => return Err("unterminated label set".into()),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.ok_or("label without '='")?;
            let lname = &r[start..eq];
            let valid = !lname.is_empty()
                && !lname.starts_with("__")
                && lname.chars().enumerate().all(|(i, c)| {
                    c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())
                });
            if !valid {
                return Err(format!("bad label name {lname:?}"));
            }
            if chars.next().map(|x| x.1) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|x| x.1) {
                    Some('\\') => match chars.next().map(|x| x.1) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        _ => return Err("bad escape in label value".into()),
                    },
                    Some('"') => break,
                    Some('\n') | None => return Err("unterminated label value".into()),
                    Some(c) => value.push(c),
                }
            }
            if labels.insert(lname.to_string(), value).is_some() {
                return Err("repeated label".into());
            }
            match chars.next().map(|x| x.1) {
                Some(',') => {}
                Some('}') => {
                    // position of this '}' is the current index - handled by slicing below
                    end = Some(usize::MAX);
                    break;
                }
                _ => return Err("expected ',' or '}' after a label".into()),
            }
        }
        let after = match end {
            Some(usize::MAX) => chars.peek().map_or(r.len(), |&(i, _)| i),
            Some(i) => i + 1,
            None => return Err("unterminated label set".into()),
        };
        rest = &r[after..];
    }
    if !rest.starts_with([' ', '\t']) {
        return Err("no blank before the value".into());
    }
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let value = match fields.as_slice() {
        [v] => parse_float(v)?,
        [v, ts] => {
            ts.parse::<i64>().map_err(|_| "bad timestamp")?;
            parse_float(v)?
        }
        _ => return Err("expected a value and an optional timestamp".into()),
    };
    Ok(Sample {
        name: name.into(),
        labels,
        value,
    })
}

#[test]
fn the_parser_rejects_bad_expositions() {
    for bad in [
        "a 1",                                       // no final newline
        "1a 1\n",                                    // bad name
        "a{b=\"x} 1\n",                              // unterminated value
        "a{__b=\"x\"} 1\n",                          // reserved label
        "a{b=\"x\"}1\n",                             // no blank
        "a one\n",                                   // bad value
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",     // two TYPE lines
        "a 1\nb 2\na 3\n",                           // interleaved
        "a 1\na 2\n",                                // duplicate
        "# TYPE s summary\ns{quantile=\"avg\"} 1\n", // brpc's avg quantile
        "# TYPE s summary\ns 1\n",                   // no quantile
        "# TYPE a widget\na 1\n",                    // unknown type
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
    let good = "# HELP a x y\n# TYPE a gauge\na 1\n# TYPE s summary\n\
                s{quantile=\"0.5\",x=\"a\\\"b\"} 2 1700000000\ns_sum +Inf\ns_count 3\nb NaN\n";
    let f = parse(good).unwrap();
    assert_eq!(f["s"].samples.len(), 3);
    assert_eq!(f["s"].samples[0].labels["x"], "a\"b");
    assert_eq!(f["b"].kind, "untyped");
}

#[test]
fn rendered_registry_parses_and_carries_the_values() {
    let c = Collector::manual();
    let reg = Registry::new();
    let adder = Adder::new();
    adder.add(42);
    adder
        .expose_in(&reg, "rpc_server_8000_error_count")
        .unwrap();
    let fl = FloatAdder::new();
    fl.add(f64::INFINITY);
    fl.expose_in(&reg, "weird_float").unwrap();
    let starts_with_digit = Adder::new();
    starts_with_digit
        .expose_in(&reg, "8000_connections")
        .unwrap();
    let text = PassiveStatus::new(|| "left out".to_string());
    text.expose_in(&reg, "a_version").unwrap();
    let rec = LatencyRecorder::with_collector(10, &c);
    rec.expose_in(&reg, "rpc_server_8000_example_echo_service_echo")
        .unwrap();
    for v in 1..=100 {
        rec.record(v);
    }
    c.tick();

    let out = prometheus::render(&reg);
    let fams = parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(!out.contains("left out") && !fams.contains_key("a_version"));
    let g = &fams["rpc_server_8000_error_count"];
    assert_eq!((g.kind.as_str(), g.samples[0].value), ("gauge", 42.0));
    assert_eq!(fams["weird_float"].samples[0].value, f64::INFINITY);
    assert!(fams.contains_key("_8000_connections"));

    let s = &fams["rpc_server_8000_example_echo_service_echo"];
    assert_eq!(s.kind, "summary");
    let q: Vec<(String, f64)> = s
        .samples
        .iter()
        .filter_map(|x| Some((x.labels.get("quantile")?.clone(), x.value)))
        .collect();
    let labels: Vec<&str> = q.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(labels, ["0.5", "0.9", "0.99", "0.999", "1"]);
    // Within half a bucket (1/32) of the exact rank, never above the maximum.
    for ((_, got), want) in q.iter().zip([50.0, 90.0, 99.0, 100.0, 100.0]) {
        assert!((got - want).abs() <= want / 32.0 && *got <= 100.0, "{q:?}");
    }
    let by_name = |n: &str| s.samples.iter().find(|x| x.name == n).map(|x| x.value);
    assert_eq!(
        by_name("rpc_server_8000_example_echo_service_echo_sum"),
        Some(5050.0)
    );
    assert_eq!(
        by_name("rpc_server_8000_example_echo_service_echo_count"),
        Some(100.0)
    );
    assert_eq!(
        fams["rpc_server_8000_example_echo_service_echo_qps"].samples[0].value,
        100.0
    );
    assert_eq!(
        fams["rpc_server_8000_example_echo_service_echo_latency"].samples[0].value,
        50.5
    );
    assert!(!fams.contains_key("rpc_server_8000_example_echo_service_echo_latency_99"));
    assert!(!fams.contains_key("rpc_server_8000_example_echo_service_echo_max_latency"));
}

#[test]
fn name_clashes_never_break_the_output() {
    let c = Collector::manual();
    let reg = Registry::new();
    let rec = LatencyRecorder::with_collector(10, &c);
    rec.expose_in(&reg, "m").unwrap();
    // Gauges whose names collide with the summary's samples.
    let clash1 = Adder::new();
    clash1.expose_in(&reg, "m_sum").unwrap();
    let clash2 = Adder::new();
    clash2.expose_in(&reg, "m").unwrap();
    let out = prometheus::render(&reg);
    let fams = parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    // The gauge `m` sorts first and wins; the summary that would reuse its name is skipped.
    assert_eq!(fams["m"].kind, "gauge");
    assert_eq!(fams["m_sum"].kind, "gauge");
}

#[test]
fn global_registry_with_default_variables_parses() {
    expose_default_variables().unwrap();
    let out = prometheus::render(Registry::global());
    let fams = parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    for n in [
        "process_cpu_usage",
        "process_memory_resident",
        "fiber_count",
    ] {
        assert_eq!(fams[n].kind, "gauge", "{n}");
    }
    assert_eq!(prometheus::CONTENT_TYPE, "text/plain; version=0.0.4");
}
