/*!
A strict parser for the Prometheus text exposition format 0.0.4 (prometheus.io, "Exposition
formats"), for the tests that read `mosaic-hb status --format prometheus` and the exporter:
line-oriented, `\n` endings and a final `\n`; `# HELP name docstring` (escapes `\\`, `\n`)
and `# TYPE name type` at most once per name and before its first sample; samples
`name{label="value",...} value [timestamp]` with names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
`[a-zA-Z_][a-zA-Z0-9_]*` (not `__`-prefixed: reserved), label values escaping `\\`, `\"` and
`\n`; values as Go's ParseFloat reads them; timestamps int64; all lines of a family in one
uninterrupted group; each series once.
*/

use std::collections::HashSet;

#[derive(Debug, Default)]
pub struct Family {
    pub name: String,
    pub help: Option<String>,
    pub kind: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp: Option<i64>,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v)
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A float as Go's `strconv.ParseFloat` writes and reads it in decimal: an optional sign,
/// digits with an optional point, an optional exponent; or NaN and infinities.
fn parse_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(if text.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" {
        // Go reads only an unsigned NaN.
        return (unsigned.len() == text.len()).then_some(f64::NAN);
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || !all_digits(digits) {
            return None;
        }
    }
    text.parse().ok()
}

fn unescape(text: &str, quote_allowed: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote_allowed => out.push('"'),
            other => return Err(format!("invalid escape \\{other:?} in {text:?}")),
        }
    }
    Ok(out)
}

pub fn parse_prometheus(text: &str) -> Result<Vec<Family>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line does not end with a line feed".into());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut series = HashSet::new();
    // split_terminator, not lines: lines would hide a `\r` before the `\n`.
    for (n, raw) in text.split_terminator('\n').enumerate() {
        let at = |what: String| format!("line {}: {what}: {raw:?}", n + 1);
        if raw.contains('\r') {
            return Err(at("carriage return".into()));
        }
        let line = raw.trim_matches(is_blank);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start_matches(is_blank);
            let (keyword, rest) = comment.split_once(is_blank).unwrap_or((comment, ""));
            if keyword != "HELP" && keyword != "TYPE" {
                continue;
            }
            let rest = rest.trim_start_matches(is_blank);
            let (name, tail) = rest.split_once(is_blank).unwrap_or((rest, ""));
            if !is_metric_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            let family = enter(&mut families, name).map_err(&at)?;
            if !family.samples.is_empty() {
                return Err(at(format!("{keyword} after samples of {name}")));
            }
            let tail = tail.trim_start_matches(is_blank);
            if keyword == "HELP" {
                if family.help.is_some() {
                    return Err(at("a second HELP".into()));
                }
                family.help = Some(unescape(tail, false).map_err(&at)?);
            } else {
                if family.kind.is_some() {
                    return Err(at("a second TYPE".into()));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail) {
                    return Err(at(format!("bad type {tail:?}")));
                }
                family.kind = Some(tail.to_string());
            }
            continue;
        }
        let sample = parse_sample(line).map_err(&at)?;
        let family_name = family_of(&families, &sample.name);
        let mut key = vec![sample.name.clone()];
        let mut labels = sample.labels.clone();
        labels.sort();
        key.extend(labels.into_iter().flat_map(|(k, v)| [k, v]));
        if !series.insert(key) {
            return Err(at("a repeated series".into()));
        }
        enter(&mut families, &family_name)
            .map_err(&at)?
            .samples
            .push(sample);
    }
    Ok(families)
}

/// The family a sample named `name` belongs to: a histogram's or summary's `_sum`, `_count`
/// and `_bucket` belong to it; any other name is its own family.
fn family_of(families: &[Family], name: &str) -> String {
    if let Some(last) = families.last() {
        let compound = matches!(last.kind.as_deref(), Some("histogram" | "summary"));
        let suffix = name.strip_prefix(last.name.as_str());
        if compound && matches!(suffix, Some("_sum" | "_count" | "_bucket")) {
            return last.name.clone();
        }
    }
    name.to_string()
}

/// The family `name`, which must be the current one or a new one: families do not interleave.
fn enter<'a>(families: &'a mut Vec<Family>, name: &str) -> Result<&'a mut Family, String> {
    let current = families.last().is_some_and(|f| f.name == name);
    if !current {
        if families.iter().any(|f| f.name == name) {
            return Err(format!("family {name} is interleaved with another"));
        }
        families.push(Family {
            name: name.to_string(),
            ..Family::default()
        });
    }
    Ok(families.last_mut().unwrap())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || is_blank(c))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = line[name_end..].trim_start_matches(is_blank);
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches(is_blank);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("a label without '='")?;
            let label = rest[..eq].trim_end_matches(is_blank);
            if !is_label_name(label) {
                return Err(format!("bad label name {label:?}"));
            }
            if labels.iter().any(|(k, _)| k == label) {
                return Err(format!("repeated label {label}"));
            }
            rest = rest[eq + 1..]
                .trim_start_matches(is_blank)
                .strip_prefix('"')
                .ok_or("a label value without '\"'")?;
            // The value ends at the first quote that no backslash escapes.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in rest.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("an unterminated label value")?;
            labels.push((label.to_string(), unescape(&rest[..end], true)?));
            rest = rest[end + 1..].trim_start_matches(is_blank);
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
        if !rest.starts_with(is_blank) {
            return Err("no blank before the value".into());
        }
    }
    let mut tokens = rest.split(is_blank).filter(|t| !t.is_empty());
    let value = tokens.next().ok_or("no value")?;
    let value = parse_float(value).ok_or_else(|| format!("bad value {value:?}"))?;
    let timestamp = match tokens.next() {
        Some(ts) => {
            let digits = ts.strip_prefix('-').unwrap_or(ts);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad timestamp {ts:?}"));
            }
            Some(
                ts.parse::<i64>()
                    .map_err(|_| format!("bad timestamp {ts:?}"))?,
            )
        }
        None => None,
    };
    if let Some(extra) = tokens.next() {
        return Err(format!("unexpected {extra:?}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp,
    })
}

/// The parser itself, on the specification's text and on what it must refuse: it needs no
/// tmux, so it runs in a plain `cargo test`.
#[test]
fn prometheus_parser_is_strict() {
    // The specification's own example first.
    let spec = concat!(
        "# HELP http_requests_total The total number of HTTP requests.\n",
        "# TYPE http_requests_total counter\n",
        "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n",
        "http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n",
        "\n",
        "# Escaping in label values:\n",
        "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n",
        "metric_without_timestamp_and_labels 12.47\n",
        "something_weird{problem=\"division by zero\"} +Inf -3982045\n",
        "# TYPE http_request_duration_seconds histogram\n",
        "http_request_duration_seconds_bucket{le=\"0.05\"} 24054\n",
        "http_request_duration_seconds_bucket{le=\"+Inf\"} 144320\n",
        "http_request_duration_seconds_sum 53423\n",
        "http_request_duration_seconds_count 144320\n",
    );
    let families = parse_prometheus(spec).unwrap();
    assert_eq!(families.len(), 5);
    let msdos = &families[1].samples[0];
    assert_eq!(msdos.label("path"), "C:\\DIR\\FILE.TXT");
    assert_eq!(msdos.label("error"), "Cannot find file:\n\"FILE.TXT\"");
    assert_eq!(families[3].samples[0].value, f64::INFINITY);
    assert_eq!(families[4].samples.len(), 4);

    for bad in [
        "a 1",                              // no final line feed
        "a{b=\"1\"} 1\na{b=\"1\"} 2\n",     // a repeated series
        "a 1\nb 1\na 2\n",                  // interleaved families
        "a 1\n# TYPE a gauge\n",            // TYPE after samples
        "# TYPE a gauge\n# TYPE a gauge\n", // a second TYPE
        "# HELP a x\n# HELP a y\n",         // a second HELP
        "# TYPE a meter\n",                 // unknown type
        "1a 1\n",                           // bad metric name
        "a{1b=\"x\"} 1\n",                  // bad label name
        "a{__b=\"x\"} 1\n",                 // reserved label name
        "a{b=\"x\",b=\"y\"} 1\n",           // repeated label
        "a{b=\"x\\t\"} 1\n",                // unknown escape
        "a{b=\"x} 1\n",                     // unterminated value
        "a{b=x} 1\n",                       // unquoted value
        "a{b=\"x\"}1\n",                    // value glued to the brace
        "a one\n",                          // bad value
        "a 1 2 3\n",                        // extra token
        "a 1 1.5\n",                        // bad timestamp
        "a 1\r\n",                          // carriage return
        "# HELP a back\\slash\n",           // bad HELP escape
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}
