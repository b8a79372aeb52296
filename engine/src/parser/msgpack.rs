//! `parser_msgpack`: the data holds one or more msgpack values back to back (fluentd's
//! `feed_each`); a map is one record, an array is one record per map, anything else is
//! "pattern not matched". Nothing is copied before the fields are written: values are
//! read in place.

use spate_protocol::msgpack::{self, MAX_DEPTH};

use super::json::value_records;
use super::record::{Ctx, Dedup};
use super::{ParseError, Sink};

#[derive(Debug, Default)]
pub struct MsgpackParser;

impl MsgpackParser {
    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, dedup: &mut Dedup, data: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            match msgpack::value_len(rest, MAX_DEPTH) {
                Ok(n) => {
                    value_records(ctx, dedup, &rest[..n], out, sink);
                    at += n;
                }
                Err(e) => {
                    // A truncated or malformed value ends the data.
                    sink.error(ParseError::Msgpack { offset: at + e.offset as usize });
                    return;
                }
            }
        }
    }
}
