//! The `single_value` formatter: `record[message_key].to_s`.

use super::inject::View;

#[inline]
pub(super) fn write(out: &mut Vec<u8>, message_key: &str, v: View<'_>) {
    if let Some(val) = v.get(message_key.as_bytes()) {
        val.write_to_s(out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use spate_protocol::encode::raw;
    use spate_protocol::EventTime;

    // Expectations from fluentd's test/plugin/test_formatter_single_value.rb.
    #[test]
    fn single_value() {
        let t = EventTime::new(T, 0);
        let r = rec(&[("message", Some("awesome")), ("n", None)]);
        let c = conf("<format>\n@type single_value\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "awesome\n");
        let c = conf("<format>\n@type single_value\nadd_newline false\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "awesome");
        let c = conf("<format>\n@type single_value\nmessage_key n\nnewline crlf\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "\r\n");
        let c = conf("<format>\n@type single_value\nmessage_key missing\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "\n");
        // Non-strings print as Ruby's to_s: numbers in decimal, maps as inspect.
        let mut m = Vec::new();
        raw::map_header(&mut m, 2);
        raw::str(&mut m, b"message");
        raw::uint(&mut m, 1);
        raw::str(&mut m, b"h");
        raw::map_header(&mut m, 1);
        raw::str(&mut m, b"a");
        raw::bool(&mut m, true);
        let c = conf("<format>\n@type single_value\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &m), "1\n");
        let c = conf("<format>\n@type single_value\nmessage_key h\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &m), "{\"a\" => true}\n");
    }
}
