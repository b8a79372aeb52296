//! `parser_tsv`: `text.split(delimiter, keys.length)` mapped onto `keys`, as fluentd's
//! `parser_tsv.rb`: the last key takes the rest of the line, keys beyond the columns
//! are nil, a single-space delimiter splits on blank runs (Ruby's awk mode).

use super::csv::layout;
use super::record::{Common, Ctx, Rec, Role};
use super::{emit, Sink};
use crate::config::{ConfigError, Element};

#[derive(Debug, Clone)]
pub struct Conf {
    layout: Vec<(Box<[u8]>, usize, Role)>,
    nkeys: usize,
    delimiter: Box<[u8]>,
}

impl Conf {
    pub fn from_element(e: &Element, common: &Common) -> Result<Conf, ConfigError> {
        let keys = e.array("keys")?.ok_or_else(|| ConfigError::at(&e.pos, "'keys' parameter is required"))?;
        let delimiter = e.string_or("delimiter", "\t");
        if delimiter.is_empty() {
            return Err(ConfigError::at(&e.pos, "delimiter must not be empty"));
        }
        Ok(Conf { layout: layout(&keys, common), nkeys: keys.len(), delimiter: delimiter.into_bytes().into() })
    }
}

#[derive(Debug)]
pub struct TsvParser {
    conf: Conf,
    cols: Vec<(usize, usize)>,
}

impl TsvParser {
    pub fn new(conf: Conf) -> Self {
        TsvParser { conf, cols: Vec::new() }
    }

    /// Ruby's `split(delim, limit)` (limit >= 1): trailing empty pieces are kept.
    fn split(&mut self, t: &[u8]) {
        self.cols.clear();
        let d = &*self.conf.delimiter;
        let limit = self.conf.nkeys;
        if limit == 0 || t.is_empty() {
            return;
        }
        let awk = d == b" ";
        let mut at = 0;
        if awk {
            while t.get(at).is_some_and(u8::is_ascii_whitespace) {
                at += 1;
            }
            if at == t.len() {
                return;
            }
        }
        while self.cols.len() + 1 < limit {
            let found = if awk {
                t[at..].iter().position(u8::is_ascii_whitespace).map(|e| {
                    let mut next = at + e;
                    while t.get(next).is_some_and(u8::is_ascii_whitespace) {
                        next += 1;
                    }
                    (at + e, next)
                })
            } else {
                memchr::memmem::find(&t[at..], d).map(|e| (at + e, at + e + d.len()))
            };
            match found {
                Some((end, next)) => {
                    self.cols.push((at, end));
                    at = next;
                    if awk && at == t.len() {
                        return;
                    }
                }
                None => break,
            }
        }
        self.cols.push((at, t.len()));
    }

    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        self.split(text);
        let (cols, layout) = (&self.cols, &self.conf.layout);
        emit(out, sink, |out| {
            let mut r = Rec::begin(out, None);
            for (key, col, role) in layout {
                match cols.get(*col) {
                    Some(&(a, b)) => r.str(ctx, key, *role, &text[a..b]),
                    None => r.nil_with_role(ctx, key, *role),
                }
            }
            Ok(r.finish(ctx)?)
        });
    }
}
