//! The `out_file` formatter: `time<delimiter>tag<delimiter>json` (out_file's default).

use spate_protocol::EventTime;

use super::inject::View;
use super::time::TimeFormat;

#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn write(
    out: &mut Vec<u8>,
    delimiter: &str,
    output_time: bool,
    output_tag: bool,
    time: &TimeFormat,
    tag: &[u8],
    t: EventTime,
    v: View<'_>,
) {
    if output_time {
        time.write(out, t);
        out.extend_from_slice(delimiter.as_bytes());
    }
    if output_tag {
        out.extend_from_slice(tag);
        out.extend_from_slice(delimiter.as_bytes());
    }
    super::json::write(out, v);
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    // Expectations from fluentd's test/plugin/test_formatter_out_file.rb (its driver
    // configures `utc true` unless told otherwise).
    #[test]
    fn out_file() {
        let r = rec(&[("message", Some("awesome"))]);
        let t = EventTime::new(T, 0);
        let j = "{\"message\":\"awesome\"}";
        for (nl, end) in [("lf", "\n"), ("crlf", "\r\n")] {
            let c = conf(&format!("<format>\n@type out_file\nutc true\nnewline {nl}\n</format>"), "x").unwrap();
            assert_eq!(fmt(&c, "tag", t, &r), format!("2016-04-25T12:34:56Z\ttag\t{j}{end}"));
            let c =
                conf(&format!("<format>\nutc true\noutput_time false\nnewline {nl}\n</format>"), "out_file").unwrap();
            assert_eq!(fmt(&c, "tag", t, &r), format!("tag\t{j}{end}"));
            let c =
                conf(&format!("<format>\nutc true\noutput_tag false\nnewline {nl}\n</format>"), "out_file").unwrap();
            assert_eq!(fmt(&c, "tag", t, &r), format!("2016-04-25T12:34:56Z\t{j}{end}"));
            let c = conf(
                &format!("<format>\nutc true\noutput_tag false\noutput_time false\nnewline {nl}\n</format>"),
                "out_file",
            )
            .unwrap();
            assert_eq!(fmt(&c, "tag", t, &r), format!("{j}{end}"));
        }
        for both in ["true", "false"] {
            let e = conf(&format!("<format>\nutc {both}\nlocaltime {both}\n</format>"), "out_file").unwrap_err();
            assert!(e.to_string().contains("both of utc and localtime are specified, use only one of them"));
        }
        // delimiter SPACE/COMMA, a fixed zone, and the numeric time types.
        let c = conf("<format>\ndelimiter COMMA\ntimezone -07:00\n</format>", "out_file").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), format!("2016-04-25T05:34:56-07:00,tag,{j}\n"));
        let c =
            conf("<format>\ndelimiter SPACE\ntime_format %Y%m%d %H:%M:%S.%L %z\nutc\n</format>", "out_file").unwrap();
        assert_eq!(
            fmt(&c, "tag", EventTime::new(T, 123_456_789), &r),
            format!("20160425 12:34:56.123 +0000 tag {j}\n")
        );
        let c = conf("<format>\ntime_type unixtime\n</format>", "out_file").unwrap();
        assert_eq!(fmt(&c, "tag", t, &r), format!("1461587696\ttag\t{j}\n"));
        let c = conf("<format>\ntime_type float\n</format>", "out_file").unwrap();
        assert_eq!(fmt(&c, "tag", EventTime::new(T, 5), &r), format!("1461587696.000000005\ttag\t{j}\n"));
    }
}
