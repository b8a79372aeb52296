//! fluent.conf: the element tree ([`Element`], [`Attr`] with file:line:col), typed value
//! accessors with fluentd's rules (sizes, times, booleans, arrays, hashes; see
//! `types.rs`), and the entry points [`parse_file`] / [`parse_str`]. The grammar lives in
//! `parser.rs`, the supported embedded-Ruby idioms (`"#{...}"`) in `embedded/`, fluentd's
//! YAML format in `yaml.rs`.
//!
//! Accessors record which parameters were read, so the caller can warn about unknown
//! ones with their location (fluentd warns too; it does not fail).

pub mod dump;
mod element;
mod embedded;
mod parser;
mod types;
mod yaml;

use std::path::Path;
use std::sync::Arc;

pub use element::{Attr, ConfigError, Element, Pos, Warning};
pub use embedded::{hostname, EnvFn, EvalContext};
pub use parser::{MAX_INCLUDE_DEPTH, MAX_NESTING};
pub use types::{parse_array, parse_bool, parse_float, parse_hash, parse_int, parse_size, parse_time};

fn log_warnings(r: Result<(Element, Vec<Warning>), ConfigError>) -> Result<Element, ConfigError> {
    let (root, warnings) = r?;
    for w in warnings {
        crate::warn!("{w}");
    }
    Ok(root)
}

/// How a config file is read: fluentd's `--config-file-type` (`guess`, the default, reads
/// `*.yaml`/`*.yml` as YAML and anything else as fluent.conf syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileType {
    #[default]
    Guess,
    Yaml,
}

impl FileType {
    /// `--config-file-type` values, as fluentd accepts them.
    pub fn from_arg(s: &str) -> Option<FileType> {
        match s {
            "guess" => Some(FileType::Guess),
            "yaml" | "yml" => Some(FileType::Yaml),
            _ => None,
        }
    }
}

/// [`parse_file`] with an explicit [`FileType`].
pub fn parse_file_as(path: &Path, ctx: &EvalContext, ty: FileType) -> Result<Element, ConfigError> {
    log_warnings(parse_file_with_warnings_as(path, ctx, ty))
}

/// [`parse_file_as`], returning the warnings instead of logging them.
pub fn parse_file_with_warnings_as(
    path: &Path,
    ctx: &EvalContext,
    ty: FileType,
) -> Result<(Element, Vec<Warning>), ConfigError> {
    if ty == FileType::Yaml || yaml::is_yaml_path(path) {
        return yaml::parse_file(path, ctx);
    }
    parse_file_with_warnings(path, ctx)
}

/// Parses a config file, following `@include`s relative to it, and logs the warnings.
/// Positions name the file as `path` spells it (included files by their joined path).
/// A `*.yaml`/`*.yml` file is read as fluentd's YAML format (as fluentd guesses).
pub fn parse_file(path: &Path, ctx: &EvalContext) -> Result<Element, ConfigError> {
    log_warnings(parse_file_with_warnings_as(path, ctx, FileType::Guess))
}

/// Parses config text (`file_name` is used in positions, `base_dir` for `@include`) and
/// logs the warnings.
pub fn parse_str(text: &str, file_name: &str, base_dir: &Path, ctx: &EvalContext) -> Result<Element, ConfigError> {
    log_warnings(parse_str_with_warnings(text, file_name, base_dir, ctx))
}

/// [`parse_file`] for fluent.conf syntax whatever the file name, returning the warnings
/// instead of logging them.
pub fn parse_file_with_warnings(path: &Path, ctx: &EvalContext) -> Result<(Element, Vec<Warning>), ConfigError> {
    let name = path.to_string_lossy();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::at(&Pos { file: Arc::from(&*name), line: 1, col: 1 }, format!("cannot read config file: {e}"))
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    parser::parse(&text, &name, &base, ctx, vec![canon])
}

/// [`parse_str`], returning the warnings instead of logging them.
pub fn parse_str_with_warnings(
    text: &str,
    file_name: &str,
    base_dir: &Path,
    ctx: &EvalContext,
) -> Result<(Element, Vec<Warning>), ConfigError> {
    parser::parse(text, file_name, base_dir, ctx, Vec::new())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ctx() -> EvalContext {
        EvalContext::with_env("h", None, Default::default())
    }

    fn section(body: &str) -> Element {
        let (root, _) =
            parse_str_with_warnings(&format!("<s>\n{body}</s>\n"), "t.conf", Path::new("."), &ctx()).unwrap();
        root.elements.into_iter().next().unwrap()
    }

    #[test]
    fn typed_accessors() {
        let s = section(
            "  b1 yes\n  b2 false\n  b3\n  n 42\n  f 0.25\n  sz 8m\n  t 1h\n  t2 0.5\n  e json\n  a a, b\n  ja [\"x\", 2]\n  h k1:v1,k2:v2\n  jh {\"k\": [1]}\n",
        );
        assert_eq!(s.bool("b1").unwrap(), Some(true));
        assert_eq!(s.bool("b2").unwrap(), Some(false));
        assert_eq!(s.bool("b3").unwrap(), Some(true));
        assert_eq!(s.bool("missing").unwrap(), None);
        assert_eq!(s.int("n").unwrap(), Some(42));
        assert_eq!(s.float("f").unwrap(), Some(0.25));
        assert_eq!(s.size("sz").unwrap(), Some(8 << 20));
        assert_eq!(s.time("t").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(s.time("t2").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(s.enum_of("e", &["json", "msgpack"]).unwrap(), Some("json".to_string()));
        assert_eq!(s.array("a").unwrap(), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(s.array("ja").unwrap(), Some(vec!["x".to_string(), "2".to_string()]));
        assert_eq!(s.hash("h").unwrap(), Some(vec![("k1".into(), "v1".into()), ("k2".into(), "v2".into())]));
        assert_eq!(s.hash("jh").unwrap(), Some(vec![("k".into(), "[1]".into())]));
        assert_eq!(s.string_or("missing", "d"), "d");
        assert_eq!(s.string_or("e", "d"), "json");
        assert!(s.unused_attrs().is_empty());
    }

    #[test]
    fn nil_is_not_set() {
        let s = section("  t nil\n  n nil\n");
        assert_eq!(s.time("t").unwrap(), None);
        assert_eq!(s.int("n").unwrap(), None);
    }

    #[test]
    fn typed_errors_name_the_place_and_what_was_expected() {
        let s = section("  b maybe\n  n 12abc\n  sz 12q\n  t 5 minutes\n  e xml\n  h nocolon\n");
        let err = |r: Result<(), ConfigError>| r.unwrap_err().to_string();
        assert_eq!(err(s.bool("b").map(drop)), "t.conf:2:3: b \"maybe\": expected true, false, yes or no (lowercase)");
        assert_eq!(err(s.int("n").map(drop)), "t.conf:3:3: n \"12abc\": expected an integer");
        assert_eq!(
            err(s.size("sz").map(drop)),
            "t.conf:4:3: sz \"12q\": expected a size such as 1024, 512k, 8m, 1g (powers of 1024)"
        );
        assert!(err(s.time("t").map(drop)).starts_with("t.conf:5:3: t \"5 minutes\": expected a time"));
        assert_eq!(
            err(s.enum_of("e", &["json", "msgpack"]).map(drop)),
            "t.conf:6:3: e: valid options are json,msgpack but got xml"
        );
        assert!(err(s.hash("h").map(drop)).starts_with("t.conf:7:3: h \"nocolon\": expected key:value pairs"));
    }

    #[test]
    fn reserved_names_fall_back_to_v0_names() {
        let s = section("  type forward\n  id in1\n  log_level debug\n");
        assert_eq!(s.plugin_type(), Some("forward"));
        assert_eq!(s.str("@id"), Some("in1"));
        assert_eq!(s.str("@log_level"), Some("debug"));
        assert!(s.unused_attrs().is_empty());
        let s = section("  @type a\n  type b\n");
        assert_eq!(s.plugin_type(), Some("a"));
        assert_eq!(s.unused_attrs().iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), ["type"]);
        s.mark_all_used();
        assert!(s.unused_attrs().is_empty());
    }

    #[test]
    fn unreadable_file_is_located() {
        let e = parse_file(Path::new("/nonexistent/fluent.conf"), &ctx()).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/fluent.conf:1:1: cannot read config file: "), "{e}");
    }
}
