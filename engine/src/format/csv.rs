//! The `csv` formatter: the values of `fields` (plain keys or record accessors such as
//! `$.a.b`) as one CSV row, written as Ruby's CSV library writes it: with
//! `force_quotes` (the default) every field is quoted, `"` doubled; without it a field
//! is quoted only when it is empty or holds `\r`, `\n`, `"` or a delimiter character,
//! and nil is an empty unquoted field.

use super::inject::{Val, View};
use crate::config::{ConfigError, Element};
use crate::ruby::accessor::{Accessor, Dug, Step};

#[derive(Debug, Clone, PartialEq)]
pub struct Csv {
    pub(crate) fields: Vec<Accessor>,
    pub delimiter: String,
    pub force_quotes: bool,
    /// Ruby CSV's `row_sep`: `"\n"` (`:auto`), or nothing with `add_newline false`.
    pub row_sep: &'static str,
}

impl Csv {
    pub(super) fn configure(src: &Element) -> Result<Csv, ConfigError> {
        let delimiter = match src.str("delimiter") {
            None => ",".to_string(),
            Some("\\t" | "TAB") => "\t".to_string(),
            Some(d) => d.to_string(),
        };
        let names: Vec<String> = src
            .array("fields")?
            .ok_or_else(|| ConfigError::at(&src.pos, "'fields' parameter is required (format csv)"))?
            .into_iter()
            .filter(|f| !f.is_empty())
            .collect();
        if names.is_empty() {
            return Err(ConfigError::at(&src.pos, "empty value is specified in fields parameter"));
        }
        let mut fields = Vec::with_capacity(names.len());
        for n in &names {
            fields.push(
                Accessor::parse(n).map_err(|e| ConfigError::at(&src.pos, format!("fields: {n:?}: {}", e.reason)))?,
            );
        }
        Ok(Csv {
            fields,
            delimiter,
            force_quotes: src.bool("force_quotes")?.unwrap_or(true),
            row_sep: if src.bool("add_newline")?.unwrap_or(true) { "\n" } else { "" },
        })
    }

    #[inline]
    pub(super) fn write(&self, out: &mut Vec<u8>, v: View<'_>) {
        for (i, a) in self.fields.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(self.delimiter.as_bytes());
            }
            let val = lookup(a, v);
            self.field(out, val);
        }
        out.extend_from_slice(self.row_sep.as_bytes());
    }

    fn field(&self, out: &mut Vec<u8>, val: Option<Val<'_>>) {
        let val = val.filter(|v| !v.is_nil());
        let start = out.len();
        if let Some(v) = val {
            v.write_to_s(out);
        }
        let quote = self.force_quotes || (val.is_some() && self.quotable(&out[start..]));
        if quote {
            let text_has_quote = memchr::memchr(b'"', &out[start..]).is_some();
            if text_has_quote {
                let text = out.split_off(start);
                out.push(b'"');
                for &b in &text {
                    if b == b'"' {
                        out.push(b'"');
                    }
                    out.push(b);
                }
            } else {
                out.insert(start, b'"');
            }
            out.push(b'"');
        }
    }

    /// Ruby CSV's rule: empty, or (valid encoding and) a `\r`, `\n`, quote or any
    /// character of the column separator.
    fn quotable(&self, s: &[u8]) -> bool {
        if s.is_empty() {
            return true;
        }
        let Ok(text) = std::str::from_utf8(s) else { return false };
        text.contains(['\r', '\n', '"']) || text.contains(|c| self.delimiter.contains(c))
    }
}

/// `record[field]` or the accessor's `dig` (a Ruby TypeError leaves the field nil).
fn lookup<'a>(a: &Accessor, v: View<'a>) -> Option<Val<'a>> {
    if let Some(Step::Key(k)) = a.steps.first() {
        if let Some(inj) = v.extra.get(k) {
            // An injected scalar has nothing to dig into.
            return (a.steps.len() == 1).then_some(Val::Inj(inj));
        }
    }
    match a.dig(v.rec) {
        Dug::Value(x) if !x.is_nil() => Some(Val::Ref(x)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use spate_protocol::encode::raw;
    use spate_protocol::EventTime;

    fn csv(params: &str) -> super::super::FormatConf {
        conf(&format!("<format>\n@type csv\n{params}\n</format>"), "x").unwrap()
    }

    // Expectations from fluentd's test/plugin/test_formatter_csv.rb.
    #[test]
    fn csv_as_fluentd() {
        let t = EventTime::new(T, 0);
        let r = rec(&[("message", Some("awesome")), ("message2", Some("awesome2"))]);
        assert_eq!(fmt(&csv("fields message,message2"), "tag", t, &r), "\"awesome\",\"awesome2\"\n");
        assert_eq!(fmt(&csv("fields message,message2\nadd_newline false"), "tag", t, &r), "\"awesome\",\"awesome2\"");
        assert_eq!(
            fmt(&csv("fields message,message2\ndelimiter \"\\t\""), "tag", t, &r),
            "\"awesome\"\t\"awesome2\"\n"
        );
        assert_eq!(fmt(&csv("fields message,message2\ndelimiter TAB"), "tag", t, &r), "\"awesome\"\t\"awesome2\"\n");
        assert_eq!(fmt(&csv("fields message,message2\ndelimiter \\t"), "tag", t, &r), "\"awesome\"\t\"awesome2\"\n");
        assert_eq!(fmt(&csv("fields message,message2\ndelimiter |"), "tag", t, &r), "\"awesome\"|\"awesome2\"\n");
        assert_eq!(fmt(&csv("fields message,message2\nforce_quotes false"), "tag", t, &r), "awesome,awesome2\n");
        for m2 in [None, Some("")] {
            let r = rec(&[("message", Some("awesome")), ("message2", m2), ("message3", Some("awesome3"))]);
            assert_eq!(fmt(&csv("fields message,message2,message3"), "tag", t, &r), "\"awesome\",\"\",\"awesome3\"\n");
        }
        // Whitespace and empty entries in fields are dropped; nothing left is an error.
        let r = rec(&[("one", Some("1")), ("two", Some("2")), ("three", Some("3"))]);
        for f in ["one,two,three", "one , two , three", "one,,two,three"] {
            assert_eq!(fmt(&csv(&format!("fields {f}")), "tag", t, &r), "\"1\",\"2\",\"3\"\n");
        }
        for f in ["[]", "[\"\", \"\"]"] {
            let e = conf(&format!("<format>\n@type csv\nfields {f}\n</format>"), "x").unwrap_err();
            assert!(e.to_string().contains("empty value is specified in fields parameter"), "{e}");
        }
        let e = conf("<format>\n@type csv\n</format>", "x").unwrap_err();
        assert!(e.to_string().contains("'fields' parameter is required"), "{e}");
    }

    #[test]
    fn nested_fields_and_quoting_rules() {
        let t = EventTime::new(T, 0);
        let mut r = Vec::new();
        raw::map_header(&mut r, 2);
        raw::str(&mut r, b"message");
        raw::str(&mut r, b"awesome");
        raw::str(&mut r, b"nest");
        raw::map_header(&mut r, 1);
        raw::str(&mut r, b"key");
        raw::str(&mut r, b"awesome2");
        assert_eq!(fmt(&csv("fields message,$.nest.key"), "tag", t, &r), "\"awesome\",\"awesome2\"\n");
        assert_eq!(
            fmt(&csv("fields $.message.x,$.nest"), "tag", t, &r),
            "\"\",\"{\"\"key\"\" => \"\"awesome2\"\"}\"\n"
        );
        // Without force_quotes: empty is quoted, nil is not, specials are.
        let r = rec(&[("a", Some("")), ("b", None), ("c", Some("x,y")), ("d", Some("say \"hi\"")), ("e", Some("l\n"))]);
        assert_eq!(
            fmt(&csv("fields a,b,c,d,e\nforce_quotes false"), "tag", t, &r),
            "\"\",,\"x,y\",\"say \"\"hi\"\"\",\"l\n\"\n"
        );
    }
}
