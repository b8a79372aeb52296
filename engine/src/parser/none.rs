//! `parser_none`: the whole text as one field (`message_key`, default `message`), no
//! time (the current time with `estimate_current_event`).

use super::record::{Ctx, Rec};
use super::{emit, Sink};
use crate::config::{ConfigError, Element};

#[derive(Debug, Clone)]
pub struct Conf {
    pub message_key: Box<[u8]>,
}

impl Conf {
    pub fn from_element(e: &Element) -> Result<Conf, ConfigError> {
        Ok(Conf { message_key: e.string_or("message_key", "message").into_bytes().into_boxed_slice() })
    }
}

#[derive(Debug)]
pub struct NoneParser {
    conf: Conf,
}

impl NoneParser {
    pub fn new(conf: Conf) -> Self {
        NoneParser { conf }
    }

    #[inline]
    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        emit(out, sink, |out| {
            let mut r = Rec::begin(out, None);
            // fluentd's none parser neither converts nor looks for a time key.
            r.plain_str(&self.conf.message_key, text);
            Ok(r.finish_without_time_key(ctx))
        });
    }
}
