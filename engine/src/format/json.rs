//! The `json` formatter (`JSON.generate(record)`) and the `msgpack` formatter (the
//! record's msgpack, re-encoded only when `<inject>` adds fields).

use super::inject::{KeyOf, Val, View};

/// The record as JSON, injected fields set in place or appended.
#[inline]
pub(super) fn write(out: &mut Vec<u8>, v: View<'_>) {
    if v.extra.is_empty() {
        v.rec.write_json(out);
        return;
    }
    out.push(b'{');
    let mut first = true;
    v.each(|k, val| {
        if !first {
            out.push(b',');
        }
        first = false;
        k.write_json(out);
        out.push(b':');
        val.write_json(out);
    });
    out.push(b'}');
}

/// The record as msgpack: its own bytes when nothing is injected.
#[inline]
pub(super) fn write_msgpack(out: &mut Vec<u8>, v: View<'_>) {
    if v.extra.is_empty() {
        out.extend_from_slice(v.rec.as_bytes());
        return;
    }
    let mut n = 0u32;
    v.each(|_, _| n += 1);
    spate_protocol::encode::raw::map_header(out, n);
    v.each(|k, val| {
        match k {
            KeyOf::Ref(k) => out.extend_from_slice(k.as_bytes()),
            KeyOf::Str(s) => spate_protocol::encode::raw::str(out, s),
        }
        match val {
            Val::Ref(r) => out.extend_from_slice(r.as_bytes()),
            Val::Inj(i) => i.write_msgpack(out),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use spate_protocol::EventTime;

    // Expectations from fluentd's test/plugin/test_formatter_json.rb and
    // test_formatter_msgpack.rb.
    #[test]
    fn json_and_msgpack() {
        let r = rec(&[("message", Some("awesome"))]);
        let t = EventTime::new(T, 0);
        let c = conf("<format>\n@type json\n</format>", "out_file").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "{\"message\":\"awesome\"}\n");
        let c = conf("<format>\n@type json\nnewline crlf\n</format>", "out_file").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "{\"message\":\"awesome\"}\r\n");
        let c = conf("<format>\n@type json\nadd_newline false\n</format>", "out_file").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), "{\"message\":\"awesome\"}");
        let c = conf("<format>\n@type msgpack\n</format>", "out_file").unwrap();
        let mut o = Vec::new();
        c.format(&mut o, b"tag", t, &r);
        assert_eq!(o, r);
        // Injected keys replace the record's in place and are appended otherwise.
        let c = conf("<format>\n@type msgpack\n</format>\n<inject>\ntag_key message\nhostname_key h\n</inject>", "x")
            .unwrap();
        let mut o = Vec::new();
        c.format(&mut o, b"tag", t, &r);
        assert_eq!(o, rec(&[("message", Some("tag")), ("h", Some("host1"))]));
        let c = conf("<format>\n@type json\n</format>\n<inject>\ntime_key t\ntime_type float\n</inject>", "x").unwrap();
        assert_eq!(
            fmt(&c, "tag", EventTime::new(T, 500_000_000), &r),
            "{\"message\":\"awesome\",\"t\":1461587696.5}\n"
        );
    }
}
