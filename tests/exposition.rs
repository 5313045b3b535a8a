//! A strict parser of the Prometheus text format (0.0.4) with `promtool check metrics`'s
//! naming rules, written here from the format's specification — independent of the code that
//! renders `/metrics` — so that a test can hold every scrape to it.
//!
//! Checked: every line is a `# HELP`, a `# TYPE` or a sample; names and label names are legal;
//! label values are quoted and escaped; each family has one TYPE and at most one HELP, before
//! its samples, and its samples are contiguous; no series twice; values are floats (`NaN`,
//! `±Inf` included); counters end in `_total` and nothing else does; a histogram has `_bucket`
//! series with `le`, non-decreasing, a `+Inf` bucket equal to `_count`, and a `_sum`.

use std::collections::{BTreeMap, BTreeSet};

/// One parsed sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' name.
    pub name: String,
    /// Its labels, in order.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

/// The problems found in `text` (empty: it passes), and its samples.
pub fn check(text: &str) -> (Vec<String>, Vec<Sample>) {
    let mut problems = Vec::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeSet::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = n + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let text = parts.next().unwrap_or("");
            if !legal_name(name) {
                problems.push(format!("line {at}: bad metric name {name:?}"));
                continue;
            }
            match keyword {
                "HELP" if !helps.insert(name.to_owned()) => {
                    problems.push(format!("line {at}: second HELP for {name}"));
                }
                "HELP" => {}
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&text) {
                        problems.push(format!("line {at}: unknown type {text:?}"));
                    }
                    if types.insert(name.to_owned(), text.to_owned()).is_some() {
                        problems.push(format!("line {at}: second TYPE for {name}"));
                    }
                    if finished.contains(name) || current.as_deref() == Some(name) {
                        problems.push(format!("line {at}: TYPE for {name} after its samples"));
                    }
                    match text {
                        "counter" if !name.ends_with("_total") => problems
                            .push(format!("line {at}: counter {name} does not end in _total")),
                        "counter" => {}
                        _ if name.ends_with("_total") => {
                            problems.push(format!("line {at}: {text} {name} ends in _total"))
                        }
                        _ => {}
                    }
                }
                _ => {} // another comment
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = match parse_sample(line) {
            Ok(sample) => sample,
            Err(e) => {
                problems.push(format!("line {at}: {e}: {line:?}"));
                continue;
            }
        };
        let family = family_of(&sample.name, &types);
        if !types.contains_key(&family) {
            problems.push(format!("line {at}: {} has no TYPE", sample.name));
        }
        if current.as_deref() != Some(family.as_str()) {
            if finished.contains(&family) {
                problems.push(format!("line {at}: samples of {family} are not contiguous"));
            }
            if let Some(done) = current.replace(family.clone()) {
                finished.insert(done);
            }
        }
        let key = format!("{}{:?}", sample.name, sample.labels);
        if !series.insert(key.clone()) {
            problems.push(format!("line {at}: series {key} twice"));
        }
        samples.push(sample);
    }
    for (name, kind) in &types {
        if kind == "histogram" {
            problems.extend(check_histogram(name, &samples));
        }
    }
    (problems, samples)
}

/// The family a sample belongs to: a histogram's `_bucket`, `_sum` and `_count` series
/// belong to it.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types
                .get(base)
                .is_some_and(|k| k == "histogram" || k == "summary")
            {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

/// A label set.
type Labels = Vec<(String, String)>;
/// A histogram's series of one label set: the buckets `(le, count)`, the sum, the count.
type Group = (Vec<(f64, f64)>, Option<f64>, Option<f64>);

fn check_histogram(name: &str, samples: &[Sample]) -> Vec<String> {
    let mut problems = Vec::new();
    // Per label set without `le`: the buckets in order, the sum, the count.
    let mut groups: BTreeMap<Labels, Group> = BTreeMap::new();
    for sample in samples {
        let Some(suffix) = sample.name.strip_prefix(name) else {
            continue;
        };
        let labels: Vec<(String, String)> = sample
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        let group = groups.entry(labels).or_default();
        match suffix {
            "_bucket" => match sample.labels.iter().find(|(k, _)| k == "le") {
                Some((_, le)) => match parse_value(le) {
                    Some(le) => group.0.push((le, sample.value)),
                    None => problems.push(format!("{name}: bad le {le:?}")),
                },
                None => problems.push(format!("{name}: a bucket without le")),
            },
            "_sum" => group.1 = Some(sample.value),
            "_count" => group.2 = Some(sample.value),
            other => problems.push(format!("{name}: unexpected series {name}{other}")),
        }
    }
    for (labels, (buckets, sum, count)) in groups {
        let what = format!("{name}{labels:?}");
        if !buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        {
            problems.push(format!("{what}: buckets not increasing: {buckets:?}"));
        }
        match buckets.last() {
            Some(&(le, n)) if le == f64::INFINITY => {
                if count != Some(n) {
                    problems.push(format!("{what}: +Inf bucket {n} but count {count:?}"));
                }
            }
            _ => problems.push(format!("{what}: no +Inf bucket")),
        }
        if sum.is_none() {
            problems.push(format!("{what}: no _sum"));
        }
    }
    problems
}

fn legal_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn legal_label(name: &str) -> bool {
    legal_name(name) && !name.contains(':')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !legal_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end;
        loop {
            match chars.peek() {
                Some(&(i, '}')) => {
                    end = i + 1;
                    break;
                }
                None => return Err("unclosed labels".into()),
                _ => {}
            }
            let start = chars.peek().map(|&(i, _)| i).unwrap_or(0);
            let eq = inner[start..].find('=').ok_or("a label without =")? + start;
            let label = &inner[start..eq];
            if !legal_label(label) {
                return Err(format!("bad label name {label:?}"));
            }
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("an unquoted label value".into());
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        other => return Err(format!("a bad escape {other:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err("an unclosed label value".into()),
                }
            }
            labels.push((label.to_owned(), value));
            match chars.peek() {
                Some(&(_, ',')) => {
                    chars.next();
                }
                Some(&(_, '}')) => {}
                _ => return Err("labels not separated by ','".into()),
            }
        }
        rest = &inner[end..];
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ');
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_catches_what_promtool_does() {
        let good = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
            # TYPE h histogram\nh_bucket{r=\"x\",le=\"0.1\"} 1\nh_bucket{r=\"x\",le=\"+Inf\"} 2\n\
            h_sum{r=\"x\"} 0.5\nh_count{r=\"x\"} 2\n# TYPE g gauge\ng{l=\"a\\\"b\"} NaN\n";
        let (problems, samples) = check(good);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(samples.len(), 6);
        assert_eq!(samples[5].labels, vec![("l".into(), "a\"b".into())]);
        for bad in [
            "# TYPE g_total gauge\ng_total 1\n",              // a gauge named _total
            "# TYPE c counter\nc 1\n",                         // a counter without _total
            "x 1\n",                                           // no TYPE
            "# TYPE g gauge\ng 1\ng 2\n",                      // a series twice
            "# TYPE g gauge\ng{a=b} 1\n",                      // unquoted
            "# TYPE g gauge\ng one\n",                         // not a number
            "# TYPE g gauge\ng 1\n# TYPE f gauge\nf 1\ng{x=\"1\"} 2\n", // not contiguous
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", // no +Inf
            "# TYPE 9g gauge\n",                               // a bad name
        ] {
            assert!(!check(bad).0.is_empty(), "passed: {bad:?}");
        }
    }
}
