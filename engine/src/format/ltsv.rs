//! The `ltsv` formatter (http://ltsv.org/): `label:value` pairs joined by `delimiter`;
//! occurrences of the delimiter inside a value are replaced by `replacement`.

use super::inject::View;
use crate::config::Element;

#[derive(Debug, Clone, PartialEq)]
pub struct Ltsv {
    pub delimiter: String,
    pub label_delimiter: String,
    pub replacement: String,
}

impl Ltsv {
    pub(super) fn configure(src: &Element) -> Ltsv {
        Ltsv {
            delimiter: src.str("delimiter").unwrap_or("\t").to_string(),
            label_delimiter: src.str("label_delimiter").unwrap_or(":").to_string(),
            replacement: src.str("replacement").unwrap_or(" ").to_string(),
        }
    }

    #[inline]
    pub(super) fn write(&self, out: &mut Vec<u8>, v: View<'_>) {
        let start = out.len();
        let d = self.delimiter.as_bytes();
        v.each(|k, val| {
            if out.len() > start {
                out.extend_from_slice(d);
            }
            k.write_to_s(out);
            out.extend_from_slice(self.label_delimiter.as_bytes());
            let at = out.len();
            val.write_to_s(out);
            // value.to_s.gsub(delimiter, replacement), in place; rare, so the common
            // case only scans.
            if !d.is_empty() && memchr::memmem::find(&out[at..], d).is_some() {
                let text = out.split_off(at);
                replace_all(&text, d, self.replacement.as_bytes(), out);
            } else if d.is_empty() {
                let text = out.split_off(at);
                gsub_empty(&text, self.replacement.as_bytes(), out);
            }
        });
    }
}

fn replace_all(text: &[u8], pat: &[u8], rep: &[u8], out: &mut Vec<u8>) {
    let mut last = 0;
    for i in memchr::memmem::find_iter(text, pat) {
        if i < last {
            continue;
        }
        out.extend_from_slice(&text[last..i]);
        out.extend_from_slice(rep);
        last = i + pat.len();
    }
    out.extend_from_slice(&text[last..]);
}

/// Ruby's `s.gsub("", r)`: `r` before every character and at the end.
fn gsub_empty(text: &[u8], rep: &[u8], out: &mut Vec<u8>) {
    let s = String::from_utf8_lossy(text);
    for c in s.chars() {
        out.extend_from_slice(rep);
        let mut b = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
    }
    out.extend_from_slice(rep);
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use spate_protocol::EventTime;

    // Expectations from fluentd's test/plugin/test_formatter_ltsv.rb.
    #[test]
    fn ltsv() {
        let t = EventTime::new(T, 0);
        let r = rec(&[("message", Some("awesome")), ("greeting", Some("hello"))]);
        for (nl, end) in [("lf", "\n"), ("crlf", "\r\n")] {
            let c = conf(&format!("<format>\n@type ltsv\nnewline {nl}\n</format>"), "x").unwrap();
            assert_eq!(fmt(&c, "tag", t, &r), format!("message:awesome\tgreeting:hello{end}"));
            let c =
                conf(&format!("<format>\n@type ltsv\ndelimiter ,\nlabel_delimiter =\nnewline {nl}\n</format>"), "x")
                    .unwrap();
            assert_eq!(fmt(&c, "tag", t, &r), format!("message=awesome,greeting=hello{end}"));
        }
        let c = conf("<format>\n@type ltsv\nadd_newline false\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "message:awesome\tgreeting:hello");
        // The delimiter inside a value becomes the replacement; nil is empty.
        let r = rec(&[("m", Some("a\tb\tc")), ("n", None)]);
        assert_eq!(fmt(&c, "tag", t, &r), "m:a b c\tn:");
        let c = conf("<format>\n@type ltsv\ndelimiter ab\nreplacement _\nadd_newline false\n</format>", "x").unwrap();
        let r = rec(&[("m", Some("xababy"))]);
        assert_eq!(fmt(&c, "tag", t, &r), "m:x__y");
        let c = conf("<format>\n@type ltsv\ndelimiter \"\"\nreplacement -\nadd_newline false\n</format>", "x").unwrap();
        let r = rec(&[("m", Some("ab"))]);
        assert_eq!(fmt(&c, "tag", t, &r), "m:-a-b-");
    }
}
