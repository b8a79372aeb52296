//! The configuration tree: [`Element`] sections with their [`Attr`] parameters, each
//! with its file:line:col ([`Pos`]), typed accessors with fluentd's rules (sizes,
//! times, booleans, arrays, hashes; see `types.rs`) that record what was read, and the
//! errors and warnings located in it.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::types;

/// A position in a config file (1-based line and column; columns count characters).
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

/// A configuration error; its text always starts with `file:line:col: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {msg}")]
pub struct ConfigError {
    pub pos: Pos,
    pub msg: String,
}

impl ConfigError {
    pub fn at(pos: &Pos, msg: impl Into<String>) -> Self {
        ConfigError { pos: pos.clone(), msg: msg.into() }
    }
}

/// Something fluentd accepts but that is probably a mistake (a key given twice, an
/// `@include` matching no file, ...). Display: `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub pos: Pos,
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.msg)
    }
}

/// One `key value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub key: String,
    /// The value after unquoting, escapes and `#{}` expansion (JSON values are kept as
    /// compact JSON text, as fluentd does).
    pub value: String,
    /// Where the key is written (for a key given twice: the later one).
    pub pos: Pos,
}

/// A section (`<source>`, `<match x>`, `<buffer>`...) or the root (`ROOT`).
///
/// `attrs` behaves like fluentd's Hash: keys are unique, in first-appearance order.
#[derive(Debug, Clone)]
pub struct Element {
    pub name: String,
    pub arg: String,
    pub attrs: Vec<Attr>,
    pub elements: Vec<Element>,
    pub pos: Pos,
    /// Which of `attrs` an accessor has read.
    used: RefCell<Vec<bool>>,
}

impl PartialEq for Element {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.arg == o.arg && self.attrs == o.attrs && self.elements == o.elements
    }
}

/// fluentd's Element#[] falls back from the reserved names to the v0.12 ones.
const RESERVED_COMPAT: &[(&str, &str)] = &[("@type", "type"), ("@id", "id"), ("@log_level", "log_level")];

impl Element {
    pub fn new(name: String, arg: String, attrs: Vec<Attr>, elements: Vec<Element>, pos: Pos) -> Self {
        let used = RefCell::new(vec![false; attrs.len()]);
        Element { name, arg, attrs, elements, pos, used }
    }

    fn lookup(&self, key: &str) -> Option<usize> {
        self.attrs.iter().position(|a| a.key == key)
    }

    /// The parameter `key`, marked used. `@type`, `@id` and `@log_level` fall back to
    /// the old `type`, `id` and `log_level`, as fluentd's Element#[] does.
    pub fn get(&self, key: &str) -> Option<&Attr> {
        let i = self.lookup(key).or_else(|| {
            let (_, old) = RESERVED_COMPAT.iter().find(|(new, _)| *new == key)?;
            self.lookup(old)
        })?;
        if let Some(u) = self.used.borrow_mut().get_mut(i) {
            *u = true;
        }
        self.attrs.get(i)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).map(|a| a.value.as_str())
    }

    pub fn string_or(&self, key: &str, default: &str) -> String {
        self.str(key).unwrap_or(default).to_string()
    }

    fn typed<T>(&self, key: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            // fluentd's examples write `expire_dns_cache nil` meaning "not set"; its
            // non-strict number parsing reads that as 0. spate takes it as not set.
            Some(a) if a.value == "nil" => {
                crate::warn!("{}: {key} nil: treated as not set (the default)", a.pos);
                Ok(None)
            }
            Some(a) => f(&a.value).map(Some).map_err(|m| ConfigError::at(&a.pos, format!("{key} {:?}: {m}", a.value))),
        }
    }

    /// `true`/`yes`, `false`/`no` (lowercase); a key without a value means true.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.typed(key, types::parse_bool)
    }

    /// A decimal integer (`_` separators allowed).
    pub fn int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        self.typed(key, types::parse_int)
    }

    /// A finite number.
    pub fn float(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.typed(key, types::parse_float)
    }

    /// Bytes, with `k`/`m`/`g`/`t` suffixes (powers of 1024, case-insensitive; `1.5m`).
    pub fn size(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.typed(key, types::parse_size)
    }

    /// Seconds, or a number with an `ms`/`s`/`m`/`h`/`d` suffix (fractions allowed).
    pub fn time(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.typed(key, types::parse_time)
    }

    /// One of `choices` (case-sensitive); the error lists them, as fluentd's does.
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
        self.typed(key, types::parse_array)
    }

    /// A JSON object, or the comma form `k1:v1,k2:v2`.
    pub fn hash(&self, key: &str) -> Result<Option<Vec<(String, String)>>, ConfigError> {
        self.typed(key, types::parse_hash)
    }

    /// `@type`, or the old `type`.
    pub fn plugin_type(&self) -> Option<&str> {
        self.str("@type")
    }

    /// Parameters never read through the accessors (the caller warns "unknown
    /// parameter" with each one's position).
    pub fn unused_attrs(&self) -> Vec<&Attr> {
        let used = self.used.borrow();
        self.attrs.iter().enumerate().filter(|(i, _)| !used.get(*i).copied().unwrap_or(false)).map(|(_, a)| a).collect()
    }

    /// Marks every parameter as read (for sections whose parameters are free-form, such
    /// as `<record>`, or that spate ignores on purpose).
    pub fn mark_all_used(&self) {
        self.used.borrow_mut().iter_mut().for_each(|u| *u = true);
    }

    /// The subsections called `name`, in order.
    pub fn elements_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements.iter().filter(move |e| e.name == name)
    }

    /// The one subsection called `name`, if any; a second one is an error (fluentd
    /// takes sections such as `<buffer>` or `<secondary>` once).
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a Element>, ConfigError> {
        let mut it = self.elements_named(name);
        let first = it.next();
        match it.next() {
            Some(second) => Err(second.error(format!("only one <{name}> section is allowed here"))),
            None => Ok(first),
        }
    }

    /// A configuration error located at this section.
    pub fn error(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.pos, msg)
    }

    /// A configuration error located at parameter `key` if it is written here, else at
    /// this section (a missing required parameter has no line of its own).
    pub fn error_at(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        match self.get(key) {
            Some(a) => ConfigError::at(&a.pos, msg),
            None => self.error(msg),
        }
    }

    /// `<name arg>` as written (for messages).
    pub fn header(&self) -> String {
        if self.arg.is_empty() {
            format!("<{}>", self.name)
        } else {
            format!("<{} {}>", self.name, self.arg)
        }
    }

    /// Warns about parameters nothing read (fluentd warns too; it does not fail), with
    /// file:line. Called by each plugin once it has read its section.
    pub fn warn_unused(&self) {
        for a in self.unused_attrs() {
            crate::warn!("{}: parameter '{}' in {} is not used.", a.pos, a.key, self.header());
        }
    }
}
