//! `parser_apache2`: Apache's combined log format with fluentd's own field handling
//! (`parser_apache2.rb`): `-` host/user/referer/agent become nil, `code` and `size`
//! are integers (nil for `-` or 0), the time is `%d/%b/%Y:%H:%M:%S %z`, `keep_time_key`
//! adds the time text as `time`. Like fluentd's, it applies no `types` or null
//! settings. Also holds the old `apache` parser's expression.

use std::sync::OnceLock;

use super::record::{Common, Ctx, Rec};
use super::time::{ruby_to_i, TimeConf, TimeParser};
use super::{emit, ParseError, Sink};

/// fluentd's `Apache2Parser::REGEXP`, verbatim.
const EXPRESSION: &str = r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>(?:[^\"]|\\")*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>(?:[^\"]|\\")*)" "(?<agent>(?:[^\"]|\\")*)")?$"#;

/// fluentd's `parser_apache.rb` default expression (with `time_format` as nginx's).
pub const APACHE_EXPRESSION: &str = r#"/^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$/"#;

const TIME_FORMAT: &str = "%d/%b/%Y:%H:%M:%S %z";

fn regex() -> &'static regex::bytes::Regex {
    static RE: OnceLock<regex::bytes::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // The pattern only uses syntax both engines read alike; ^/$ at line bounds as Ruby.
        regex::bytes::RegexBuilder::new(EXPRESSION)
            .multi_line(true)
            .build()
            .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    })
}

#[derive(Debug)]
pub struct Apache2Parser {
    time: TimeParser,
    locs: regex::bytes::CaptureLocations,
    idx: [usize; 9],
}

const FIELDS: [&str; 9] = ["host", "user", "time", "method", "path", "code", "size", "referer", "agent"];

impl Apache2Parser {
    pub fn new(common: &Common) -> Self {
        let re = regex();
        let mut idx = [0usize; 9];
        for (i, name) in re.capture_names().enumerate() {
            if let Some(j) = name.and_then(|n| FIELDS.iter().position(|f| *f == n)) {
                idx[j] = i;
            }
        }
        let conf = TimeConf::with_format(TIME_FORMAT, common.time.zone())
            .unwrap_or_else(|e| unreachable!("static format: {e}"));
        Apache2Parser { time: TimeParser::new(conf), locs: re.capture_locations(), idx }
    }

    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        if regex().captures_read(&mut self.locs, text).is_none() {
            sink.error(ParseError::NoMatch);
            return;
        }
        let locs = &self.locs;
        let get = |j: usize| locs.get(self.idx[j]).map(|(s, e)| &text[s..e]);
        let time_text = get(2).unwrap_or_default();
        let time = &mut self.time;
        emit(out, sink, |out| {
            let t = time.parse_str(time_text)?;
            let mut r = Rec::begin(out, None);
            let dash_nil = |r: &mut Rec<'_>, key: &[u8], v: Option<&[u8]>| match v {
                Some(v) if v != b"-" => r.plain_str(key, v),
                _ => r.nil(key),
            };
            dash_nil(&mut r, b"host", get(0));
            dash_nil(&mut r, b"user", get(1));
            match get(3) {
                Some(m) => r.plain_str(b"method", m),
                None => r.nil(b"method"),
            }
            match get(4) {
                Some(p) => r.plain_str(b"path", p),
                None => r.nil(b"path"),
            }
            match get(5).map(ruby_to_i) {
                Some(c) if c != 0 => r.int(b"code", c as i64),
                _ => r.nil(b"code"),
            }
            match get(6) {
                Some(s) if s != b"-" => r.int(b"size", ruby_to_i(s).clamp(i64::MIN as i128, i64::MAX as i128) as i64),
                _ => r.nil(b"size"),
            }
            dash_nil(&mut r, b"referer", get(7));
            dash_nil(&mut r, b"agent", get(8));
            if ctx.common.keep_time_key {
                r.plain_str(b"time", time_text);
            }
            Ok(r.finish_with(Some(t)))
        });
    }
}
