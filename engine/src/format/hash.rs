//! The `hash` formatter: Ruby's `record.to_s` (`Hash#inspect`, printed in Ruby 3.4's
//! style `{"k" => "v"}`; Ruby 3.3 and older print `{"k"=>"v"}`).

use super::inject::View;

#[inline]
pub(super) fn write(out: &mut Vec<u8>, v: View<'_>) {
    out.push(b'{');
    let mut first = true;
    v.each(|k, val| {
        if !first {
            out.extend_from_slice(b", ");
        }
        first = false;
        k.write_inspect(out);
        out.extend_from_slice(b" => ");
        val.write_inspect(out);
    });
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use spate_protocol::EventTime;

    // Expectations from fluentd's test/plugin/test_formatter_hash.rb (which compares
    // after turning Ruby 3.4's " => " into "=>").
    #[test]
    fn hash() {
        let t = EventTime::new(T, 0);
        let r = rec(&[("message", Some("awesome")), ("greeting", Some("hello"))]);
        for (nl, end) in [("lf", "\n"), ("crlf", "\r\n")] {
            let c = conf(&format!("<format>\n@type hash\nnewline {nl}\n</format>"), "x").unwrap();
            assert_eq!(
                fmt(&c, "tag", t, &r).replace(" => ", "=>"),
                format!("{{\"message\"=>\"awesome\", \"greeting\"=>\"hello\"}}{end}")
            );
        }
        let c = conf("<format>\n@type hash\nadd_newline false\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "{\"message\" => \"awesome\", \"greeting\" => \"hello\"}");
        let r = rec(&[("q", Some("a\"b\n")), ("n", None)]);
        assert_eq!(fmt(&c, "tag", t, &r), "{\"q\" => \"a\\\"b\\n\", \"n\" => nil}");
    }
}
