//! The stdout line of `out_stdout` / `filter_stdout` with the json sub-formatter
//! ([`StdoutLines`]), which caches the formatted second; and the tests of the `stdout`
//! formatter (whose type, [`super::Stdout`], lives beside [`super::Formatter`] because
//! it holds one).

use std::io::Write;

use spate_protocol::EventBatch;

/// Renders batches as stdout lines, caching the formatted second.
#[derive(Default)]
pub struct StdoutLines {
    /// Cached "YYYY-mm-dd HH:MM:SS" and " +zzzz" for `sec`.
    sec: Option<u32>,
    date: Vec<u8>,
    zone: Vec<u8>,
}

impl StdoutLines {
    /// Appends one line per event of `batch` to `out`.
    pub fn render(&mut self, batch: &EventBatch, out: &mut Vec<u8>) {
        for ev in batch.events() {
            if self.sec != Some(ev.time.sec) {
                let mut full = Vec::with_capacity(32);
                crate::log::format_time(&mut full, ev.time.sec as i64, 0, 0);
                // "YYYY-mm-dd HH:MM:SS +zzzz": split at the last space.
                let cut = full.iter().rposition(|&b| b == b' ').unwrap_or(full.len());
                self.date = full[..cut].to_vec();
                self.zone = full[cut..].to_vec();
                self.sec = Some(ev.time.sec);
            }
            out.extend_from_slice(&self.date);
            let _ = write!(out, ".{:09}", ev.time.nsec);
            out.extend_from_slice(&self.zone);
            out.push(b' ');
            out.extend_from_slice(&batch.tag);
            out.extend_from_slice(b": ");
            ev.record.write_json(out);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    // fluentd's test/plugin/test_out_stdout.rb: "#{Time.at(time).localtime.strftime(TIME_FORMAT)} test: {...}\n".
    #[test]
    fn stdout() {
        let t = EventTime::new(T, 123_456_789);
        let r = rec(&[("test", Some("test"))]);
        let mut want = Vec::new();
        strftime(&mut want, "%Y-%m-%d %H:%M:%S.%N %z", T as i64, 123_456_789, Zone::Local);
        let want = String::from_utf8(want).unwrap();
        let c = conf("<format>\n@type stdout\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "test", t, &r), format!("{want} test: {{\"test\":\"test\"}}\n"));
        let c = conf("<format>\n@type stdout\noutput_type hash\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "test", t, &r), format!("{want} test: {{\"test\" => \"test\"}}\n"));
        // The sub-formatter's newline (crlf here) is chomped.
        let c = conf("<format>\n@type stdout\noutput_type ltsv\nnewline crlf\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "test", t, &r), format!("{want} test: test:test\n"));
        let c = conf("<format>\n@type stdout\ntime_format %s\noutput_type csv\nfields test\n</format>", "x").unwrap();
        assert_eq!(fmt(&c, "test", t, &r), format!("{T} test: \"test\"\n"));
        assert!(conf("<format>\n@type stdout\noutput_type stdout\n</format>", "x").is_err());
    }
}
