//! The `tsv` formatter: `record[key].to_s` for each of `keys`, joined by `delimiter`.

use super::inject::View;
use crate::config::{ConfigError, Element};

#[derive(Debug, Clone, PartialEq)]
pub struct Tsv {
    pub keys: Vec<String>,
    pub delimiter: String,
}

impl Tsv {
    pub(super) fn configure(src: &Element) -> Result<Tsv, ConfigError> {
        Ok(Tsv {
            keys: src
                .array("keys")?
                .ok_or_else(|| ConfigError::at(&src.pos, "'keys' parameter is required (format tsv)"))?,
            delimiter: src.str("delimiter").unwrap_or("\t").to_string(),
        })
    }

    #[inline]
    pub(super) fn write(&self, out: &mut Vec<u8>, v: View<'_>) {
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(self.delimiter.as_bytes());
            }
            if let Some(val) = v.get(k.as_bytes()) {
                val.write_to_s(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use spate_protocol::EventTime;

    // Expectations from fluentd's test/plugin/test_formatter_tsv.rb.
    #[test]
    fn tsv() {
        let t = EventTime::new(T, 0);
        let r = rec(&[("message", Some("awesome")), ("greeting", Some("hello"))]);
        for (nl, end) in [("lf", "\n"), ("crlf", "\r\n")] {
            let c = conf(&format!("<format>\n@type tsv\nkeys message,greeting\nnewline {nl}\n</format>"), "x").unwrap();
            assert_eq!(fmt(&c, "tag", t, &r), format!("awesome\thello{end}"));
            let c =
                conf(&format!("<format>\n@type tsv\nkeys message,greeting\ndelimiter ,\nnewline {nl}\n</format>"), "x")
                    .unwrap();
            assert_eq!(fmt(&c, "tag", t, &r), format!("awesome,hello{end}"));
        }
        let c = conf("<format>\n@type tsv\nkeys message,greeting\nadd_newline false\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "awesome\thello");
        // A missing key is an empty column (nil.to_s).
        let c = conf("<format>\n@type tsv\nkeys [\"missing\", \"greeting\"]\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "\thello\n");
        let e = conf("<format>\n@type tsv\n</format>", "x").unwrap_err();
        assert!(e.to_string().contains("'keys' parameter is required"), "{e}");
    }
}
