//! fluentd's formatters (`<format>`), one file each: `out_file`, `json`, `msgpack`,
//! `single_value`, `csv`, `ltsv`, `tsv`, `hash` and `stdout`; the `<inject>` fields they
//! are given ([`inject`]); and fluentd's time formatting ([`time`]).
//!
//! This module owns the configuration (`<format>` or v0.12's flat parameters on the
//! output, fluentd's `compat_parameters` mapping) and the per-event dispatch: a
//! formatter appends one event to a `Vec<u8>`, reading the record's msgpack bytes in
//! place (no intermediate value tree, no allocation per event). The dispatch is a
//! `match` on [`Formatter`] (static), so per-event loops stay monomorphic.

mod csv;
mod hash;
pub mod inject;
mod json;
mod ltsv;
mod out_file;
mod single_value;
pub mod stdout;
pub mod time;
mod tsv;

use std::cell::RefCell;

use spate_protocol::{EventTime, RecordRef};

use crate::config::{ConfigError, Element};

pub use csv::Csv;
pub use inject::{Inject, InjectValue, Injected, Val, View};
pub use ltsv::Ltsv;
pub use time::{parse_fixed_zone, strftime, TimeFormat, TimeType, Zone};
pub use tsv::Tsv;

/// The formatter plugin.
#[derive(Debug, Clone, PartialEq)]
pub enum Formatter {
    /// `time<delim>tag<delim>json`
    OutFile {
        delimiter: String,
        output_time: bool,
        output_tag: bool,
        time: TimeFormat,
    },
    Json,
    Msgpack,
    SingleValue {
        message_key: String,
    },
    Csv(Csv),
    Ltsv(Ltsv),
    Tsv(Tsv),
    /// Ruby's `Hash#inspect` of the record.
    Hash,
    /// `time tag: <sub-formatter output>` (out_stdout's default).
    Stdout(Box<Stdout>),
}

/// A formatter with its line end and `<inject>` fields.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatConf {
    pub formatter: Formatter,
    /// Appended after each event: `"\n"` (fluentd's `newline lf`), `"\r\n"` (`crlf`),
    /// or nothing (`add_newline false`, `msgpack`).
    pub newline: &'static str,
    pub inject: Inject,
}

pub const FORMAT_TYPES: &[&str] =
    &["csv", "hash", "json", "ltsv", "msgpack", "out_file", "single_value", "stdout", "tsv"];

fn err(e: &Element, m: impl Into<String>) -> ConfigError {
    ConfigError::at(&e.pos, m)
}

/// Parses `<format>` (or its v0.12 flat parameters on `owner`: `format`, `delimiter`,
/// `force_quotes`, `keys`, `fields`, `label_delimiter`, `output_tag`, `output_time`,
/// `message_key`, `add_newline`, `output_type`, ...) and `<inject>` (or
/// `include_time_key`, `time_key`, `include_tag_key`, `tag_key`, `localtime`, `utc`,
/// `timezone`, `time_format` on `owner`). `default` is the plugin's default formatter.
pub fn format_conf(owner: &Element, default: &str, hostname: &str) -> Result<FormatConf, ConfigError> {
    let mut fmt_elems = owner.elements_named("format");
    let f = fmt_elems.next();
    if let Some(x) = fmt_elems.next() {
        return Err(err(x, "only one <format> section is allowed"));
    }
    // With no <format>, v0.12 flat parameters live on the owner.
    let src = f.unwrap_or(owner);
    let ty = match f {
        Some(f) => f.plugin_type().unwrap_or(default).to_string(),
        None => owner.str("format").unwrap_or(default).to_string(),
    };
    let (formatter, newline) = formatter_of(src, &ty)?;
    if let Some(f) = f {
        f.warn_unused();
    }
    let inject = inject::inject_conf(owner, hostname)?;
    Ok(FormatConf { formatter, newline, inject })
}

/// `newline` (fluentd's Newline mixin).
fn line_end(src: &Element) -> Result<&'static str, ConfigError> {
    Ok(match src.enum_of("newline", &["lf", "crlf"])?.as_deref() {
        Some("crlf") => "\r\n",
        _ => "\n",
    })
}

/// `newline` and `add_newline`.
fn newline_of(src: &Element) -> Result<&'static str, ConfigError> {
    let nl = line_end(src)?;
    Ok(if src.bool("add_newline")?.unwrap_or(true) { nl } else { "" })
}

/// One formatter of type `ty` configured from `src`, with its line end.
pub(crate) fn formatter_of(src: &Element, ty: &str) -> Result<(Formatter, &'static str), ConfigError> {
    // Every fluentd formatter takes the TimeMixin parameters; out_file and stdout use them.
    let tt = src.enum_of("time_type", &["string", "unixtime", "float"])?;
    let time_format = match tt.as_deref() {
        // Numeric TimeFormatter: seconds, or seconds.nanoseconds.
        Some("unixtime") => Some("%s".to_string()),
        Some("float") => Some("%s.%N".to_string()),
        _ => src.str("time_format").map(str::to_string),
    };
    let zone = time::zone_of(src)?;
    Ok(match ty {
        "out_file" => {
            let delimiter = match src.str("delimiter") {
                None => "\t".to_string(),
                Some(d) if d.to_ascii_uppercase().contains("SPACE") => " ".into(),
                Some(d) if d.to_ascii_uppercase().contains("COMMA") => ",".into(),
                // fluentd maps anything else to a tab.
                Some(_) => "\t".into(),
            };
            let f = Formatter::OutFile {
                delimiter,
                output_time: src.bool("output_time")?.unwrap_or(true),
                output_tag: src.bool("output_tag")?.unwrap_or(true),
                time: TimeFormat { format: time_format, zone },
            };
            // out_file has no add_newline.
            (f, line_end(src)?)
        }
        "json" => {
            src.enum_of("json_parser", &["oj", "yajl", "json"])?;
            (Formatter::Json, newline_of(src)?)
        }
        "msgpack" => (Formatter::Msgpack, ""),
        "single_value" => (
            Formatter::SingleValue { message_key: src.str("message_key").unwrap_or("message").to_string() },
            newline_of(src)?,
        ),
        "csv" => (Formatter::Csv(Csv::configure(src)?), ""),
        "ltsv" => (Formatter::Ltsv(Ltsv::configure(src)), newline_of(src)?),
        "tsv" => (Formatter::Tsv(Tsv::configure(src)?), newline_of(src)?),
        "hash" => (Formatter::Hash, newline_of(src)?),
        "stdout" => {
            let output_type = src.str("output_type").unwrap_or("json");
            if output_type == "stdout" {
                return Err(err(src, "output_type stdout: the stdout formatter cannot wrap itself"));
            }
            let (sub, sub_nl) = formatter_of(src, output_type)?;
            let time = TimeFormat { format: time_format, zone: Zone::Local };
            (Formatter::Stdout(Box::new(Stdout { time, sub, sub_newline: sub_nl })), "")
        }
        other => {
            return Err(err(src, format!("unknown format type '{other}'; supported: {}", FORMAT_TYPES.join(", "))));
        }
    })
}

/// The `stdout` formatter: `<time> <tag>: <sub-formatter output, chomped>\n`, the time
/// in local time with `time_format` (default `%Y-%m-%d %H:%M:%S.%N %z`), the
/// sub-formatter chosen by `output_type` (default `json`) and configured from the same
/// section.
#[derive(Debug, Clone, PartialEq)]
pub struct Stdout {
    /// Always local time (fluentd calls `Time.at(time).localtime`).
    pub time: TimeFormat,
    pub sub: Formatter,
    /// The sub-formatter's own line end (chomped again, as fluentd does).
    pub sub_newline: &'static str,
}

const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S.%N %z";

impl Stdout {
    #[inline]
    fn write(&self, out: &mut Vec<u8>, tag: &[u8], t: EventTime, v: View<'_>) {
        let f = self.time.format.as_deref().unwrap_or(DEFAULT_TIME_FORMAT);
        time::strftime(out, f, t.sec as i64, t.nsec, self.time.zone);
        out.push(b' ');
        out.extend_from_slice(tag);
        out.extend_from_slice(b": ");
        self.sub.write(out, tag, t, v);
        out.extend_from_slice(self.sub_newline.as_bytes());
        // String#chomp: one trailing "\r\n", "\n" or "\r".
        if out.ends_with(b"\r\n") {
            out.truncate(out.len() - 2);
        } else if out.ends_with(b"\n") || out.ends_with(b"\r") {
            out.truncate(out.len() - 1);
        }
        out.push(b'\n');
    }
}

thread_local! {
    /// Per-thread (per-shard) scratch for injected time strings.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl FormatConf {
    /// Appends one formatted event. Records that are not maps are skipped (fluentd's
    /// outputs only ever see maps).
    #[inline]
    pub fn format(&self, out: &mut Vec<u8>, tag: &[u8], t: EventTime, record: &[u8]) {
        let Some(rec) = RecordRef::new(record) else { return };
        if self.inject.is_empty() {
            let view = View { rec, extra: Injected::default() };
            self.formatter.write(out, tag, t, view);
            out.extend_from_slice(self.newline.as_bytes());
            return;
        }
        SCRATCH.with(|s| {
            let mut scratch = s.borrow_mut();
            let extra = self.inject.fields(tag, t, &mut scratch);
            self.formatter.write(out, tag, t, View { rec, extra });
        });
        out.extend_from_slice(self.newline.as_bytes());
    }
}

impl Formatter {
    /// Writes one event, without the line end.
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>, tag: &[u8], t: EventTime, v: View<'_>) {
        match self {
            Formatter::OutFile { delimiter, output_time, output_tag, time } => {
                out_file::write(out, delimiter, *output_time, *output_tag, time, tag, t, v)
            }
            Formatter::Json => json::write(out, v),
            Formatter::Msgpack => json::write_msgpack(out, v),
            Formatter::SingleValue { message_key } => single_value::write(out, message_key, v),
            Formatter::Csv(c) => c.write(out, v),
            Formatter::Ltsv(l) => l.write(out, v),
            Formatter::Tsv(c) => c.write(out, v),
            Formatter::Hash => hash::write(out, v),
            Formatter::Stdout(s) => s.write(out, tag, t, v),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use spate_protocol::encode::raw;

    use super::*;
    use crate::config::{parse_str, EvalContext};

    /// A msgpack map of string keys and values (`None` for nil).
    pub fn rec(fields: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut r = Vec::new();
        raw::map_header(&mut r, fields.len() as u32);
        for (k, v) in fields {
            raw::str(&mut r, k.as_bytes());
            match v {
                Some(v) => raw::str(&mut r, v.as_bytes()),
                None => raw::nil(&mut r),
            }
        }
        r
    }

    /// Parses `<match x>BODY</match>` and returns its format configuration.
    pub fn conf(body: &str, default: &str) -> Result<FormatConf, ConfigError> {
        let text = format!("<match x>\n{body}\n</match>\n");
        let root = parse_str(
            &text,
            "test.conf",
            std::path::Path::new("."),
            &EvalContext::with_env("host1", None, Default::default()),
        )
        .unwrap();
        format_conf(&root.elements[0], default, "host1")
    }

    pub fn fmt(c: &FormatConf, tag: &str, t: EventTime, record: &[u8]) -> String {
        let mut o = Vec::new();
        c.format(&mut o, tag.as_bytes(), t, record);
        String::from_utf8(o).unwrap()
    }

    // 2016-04-25 12:34:56 UTC (fluentd's tests use event_time("2016-04-25 12:34:56 UTC")).
    pub const T: u32 = 1_461_587_696;
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn unknown_types_and_sections() {
        let e = conf("<format>\n@type yaml\n</format>", "json").unwrap_err();
        assert!(e.to_string().contains("unknown format type 'yaml'; supported: csv, hash, json"), "{e}");
        let e = conf("<format>\n@type json\n</format>\n<format>\n@type json\n</format>", "json").unwrap_err();
        assert!(e.to_string().contains("only one <format>"), "{e}");
        let e = conf("<format>\n@type json\nnewline cr\n</format>", "json").unwrap_err();
        assert!(e.to_string().contains("valid options are lf,crlf"), "{e}");
    }

    #[test]
    fn inject_applies_to_every_formatter() {
        let r = rec(&[("message", Some("awesome"))]);
        let t = EventTime::new(T, 0);
        let inj = "<inject>\ntag_key tag\ntime_key time\ntime_type unixtime\n</inject>";
        let c = conf(&format!("<format>\n@type ltsv\n</format>\n{inj}"), "json").unwrap();
        assert_eq!(fmt(&c, "a.b", t, &r), "message:awesome\ttag:a.b\ttime:1461587696\n");
        let c = conf(&format!("<format>\n@type csv\nfields time,tag,message\n</format>\n{inj}"), "json").unwrap();
        assert_eq!(fmt(&c, "a.b", t, &r), "\"1461587696\",\"a.b\",\"awesome\"\n");
        let c = conf(&format!("<format>\n@type hash\n</format>\n{inj}"), "json").unwrap();
        assert_eq!(fmt(&c, "a.b", t, &r), "{\"message\" => \"awesome\", \"tag\" => \"a.b\", \"time\" => 1461587696}\n");
        // v0.12 flat parameters: format, fields, include_tag_key.
        let c = conf("format tsv\nkeys tag,message\ninclude_tag_key true", "out_file").unwrap();
        assert_eq!(fmt(&c, "a.b", t, &r), "a.b\tawesome\n");
    }
}
