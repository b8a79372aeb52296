//! fluent.conf: the element tree ([`Element`], [`Attr`] with file:line:col), typed value
//! accessors with fluentd's rules (sizes, times, booleans, arrays, hashes), and the
//! entry points [`parse_file`] / [`parse_str`]. The grammar lives in `parser.rs`, the
//! supported embedded-Ruby idioms in `ruby.rs`.
//!
//! Accessors record which parameters were read, so the caller can warn about unknown
//! ones with their location (fluentd warns too; it does not fail).

mod parser;
mod ruby;

use std::cell::RefCell;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use ruby::EvalContext;

/// A position in a config file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A configuration error, located when possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub pos: Option<Pos>,
    pub msg: String,
}

impl ConfigError {
    pub fn at(pos: &Pos, msg: impl Into<String>) -> Self {
        ConfigError { pos: Some(pos.clone()), msg: msg.into() }
    }
    pub fn new(msg: impl Into<String>) -> Self {
        ConfigError { pos: None, msg: msg.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{p}: {}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One `key value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub key: String,
    /// The value after unquoting, escapes and `#{}` expansion (JSON values are kept as
    /// compact JSON text, as fluentd does).
    pub value: String,
    pub pos: Pos,
}

/// A section (`<source>`, `<match x>`, `<buffer>`...) or the root.
#[derive(Debug, Clone)]
pub struct Element {
    pub name: String,
    pub arg: String,
    pub attrs: Vec<Attr>,
    pub elements: Vec<Element>,
    pub pos: Pos,
    used: RefCell<Vec<bool>>,
}

impl PartialEq for Element {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.arg == o.arg && self.attrs == o.attrs && self.elements == o.elements
    }
}

impl Element {
    pub fn new(name: String, arg: String, attrs: Vec<Attr>, elements: Vec<Element>, pos: Pos) -> Self {
        let used = RefCell::new(vec![false; attrs.len()]);
        Element { name, arg, attrs, elements, pos, used }
    }

    /// The attribute for `key` (the last one wins, as in fluentd's hash), marked used.
    pub fn get(&self, key: &str) -> Option<&Attr> {
        let i = self.attrs.iter().rposition(|a| a.key == key)?;
        let mut used = self.used.borrow_mut();
        for (j, a) in self.attrs.iter().enumerate() {
            if a.key == key {
                used[j] = true;
            }
        }
        Some(&self.attrs[i])
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).map(|a| a.value.as_str())
    }

    pub fn string_or(&self, key: &str, default: &str) -> String {
        self.str(key).unwrap_or(default).to_string()
    }

    fn typed<T>(&self, key: &str, what: &str, f: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) => f(a.value.trim())
                .map(Some)
                .ok_or_else(|| ConfigError::at(&a.pos, format!("{key}: invalid {what} value {:?}", a.value))),
        }
    }

    /// `true`/`yes`, `false`/`no`; an empty value means true (fluentd).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.typed(key, "boolean (expected true or false)", parse_bool)
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        self.typed(key, "integer", parse_int)
    }

    pub fn float(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.typed(key, "number", |s| s.parse::<f64>().ok().filter(|f| f.is_finite()))
    }

    /// Bytes, with `k`/`m`/`g`/`t` (binary, case-insensitive) suffixes.
    pub fn size(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.typed(key, "size (e.g. 8m, 512k, 1g)", parse_size)
    }

    /// A duration: seconds, or with `s`/`m`/`h`/`d` (and `ms`) suffixes; fractions allowed.
    pub fn time(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.typed(key, "time (e.g. 10s, 5m, 0.1)", parse_time)
    }

    /// One of `choices`.
    pub fn enum_of(&self, key: &str, choices: &[&str]) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(a) if choices.contains(&a.value.as_str()) => Ok(Some(a.value.clone())),
            Some(a) => Err(ConfigError::at(
                &a.pos,
                format!("{key}: valid options are {} but got {}", choices.join(","), a.value),
            )),
        }
    }

    /// A JSON array, or the comma form `a,b,c`.
    pub fn array(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.typed(key, "array (JSON or a,b,c)", parse_array)
    }

    /// A JSON object, or the comma form `k1:v1,k2:v2`.
    pub fn hash(&self, key: &str) -> Result<Option<Vec<(String, String)>>, ConfigError> {
        self.typed(key, "hash (JSON or k1:v1,k2:v2)", parse_hash)
    }

    /// `@type`, or the old `type`.
    pub fn plugin_type(&self) -> Option<&str> {
        self.str("@type").or_else(|| self.str("type"))
    }

    /// Parameters never read through the accessors.
    pub fn unused_attrs(&self) -> Vec<&Attr> {
        let used = self.used.borrow();
        self.attrs.iter().enumerate().filter(|(i, _)| !used[*i]).map(|(_, a)| a).collect()
    }

    pub fn mark_all_used(&self) {
        self.used.borrow_mut().iter_mut().for_each(|u| *u = true);
    }

    pub fn elements_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements.iter().filter(move |e| e.name == name)
    }
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "yes" | "" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.replace('_', "");
    if let Some(h) = t.strip_prefix("0x") {
        return i64::from_str_radix(h, 16).ok();
    }
    t.parse().ok()
}

fn split_num(s: &str) -> Option<(f64, &str)> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let n: f64 = s[..end].parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n, s[end..].trim()))
}

pub fn parse_size(s: &str) -> Option<u64> {
    let (n, suffix) = split_num(s)?;
    let mult: f64 = match suffix.to_ascii_lowercase().as_str() {
        "" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    let v = n * mult;
    (v < u64::MAX as f64).then_some(v as u64)
}

pub fn parse_time(s: &str) -> Option<Duration> {
    let (n, suffix) = split_num(s)?;
    let secs = match suffix {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    (secs < 1e12).then(|| Duration::from_secs_f64(secs))
}

fn json_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn parse_array(s: &str) -> Option<Vec<String>> {
    if s.starts_with('[') {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        return Some(v.as_array()?.iter().map(json_to_string).collect());
    }
    if s.is_empty() {
        return Some(Vec::new());
    }
    Some(s.split(',').map(|x| x.trim().to_string()).collect())
}

pub fn parse_hash(s: &str) -> Option<Vec<(String, String)>> {
    if s.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        return Some(v.as_object()?.iter().map(|(k, v)| (k.clone(), json_to_string(v))).collect());
    }
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Parses a config file (following `@include`s relative to it).
pub fn parse_file(path: &Path, ctx: &EvalContext) -> Result<Element, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("{}: cannot read config: {e}", path.display())))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    parser::parse(&text, &path.display().to_string(), &base, ctx, vec![canon])
}

/// Parses config text; `file_name` is used in positions, `base_dir` for `@include`.
pub fn parse_str(text: &str, file_name: &str, base_dir: &Path, ctx: &EvalContext) -> Result<Element, ConfigError> {
    parser::parse(text, file_name, base_dir, ctx, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_types() {
        assert_eq!(parse_size("8m"), Some(8 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_time("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_time("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_time("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_time("2d"), Some(Duration::from_secs(172800)));
        assert_eq!(parse_time("0.1"), Some(Duration::from_millis(100)));
        assert_eq!(parse_time("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_time("-1"), None);
        assert_eq!(parse_bool(""), Some(true));
        assert_eq!(parse_bool("yes"), Some(true));
        assert_eq!(parse_bool("no"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_array(r#"["a", 1]"#), Some(vec!["a".to_string(), "1".to_string()]));
        assert_eq!(parse_array("a, b,c"), Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(parse_hash(r#"{"k":"v","n":2}"#), Some(vec![("k".into(), "v".into()), ("n".into(), "2".into())]));
        assert_eq!(parse_hash("k1:v1, k2:v2"), Some(vec![("k1".into(), "v1".into()), ("k2".into(), "v2".into())]));
        assert_eq!(parse_hash("nocolon"), None);
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("1_000"), Some(1000));
    }
}
