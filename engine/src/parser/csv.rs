//! `parser_csv`: one line of CSV mapped onto `keys`, as fluentd's `parser_csv.rb`.
//! `parser_engine normal` (the default) follows Ruby's `CSV.parse_line` with `col_sep
//! delimiter`: `"` quotes (`""` inside is a quote), an empty unquoted field is nil, a
//! quote inside an unquoted field or text after a closing quote or an unclosed quote
//! is a malformed line (an error, as Ruby raises). `parser_engine fast` is fluentd's
//! own lenient splitter (never fails). Columns beyond `keys` are dropped; keys beyond
//! the columns are nil. A key listed twice takes the later column, at the first
//! position (a Ruby Hash).

use super::record::{Common, Ctx, Rec, Role};
use super::{emit, ParseError, Sink};
use crate::config::{ConfigError, Element};

#[derive(Debug, Clone)]
pub struct Conf {
    /// (key, column index, role) in the record's field order.
    layout: Vec<(Box<[u8]>, usize, Role)>,
    delimiter: Box<[u8]>,
    fast: bool,
}

/// First-appearance order, last column for a repeated key.
pub(crate) fn layout(keys: &[String], common: &Common) -> Vec<(Box<[u8]>, usize, Role)> {
    let mut v: Vec<(Box<[u8]>, usize, Role)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match v.iter_mut().find(|(kk, _, _)| **kk == *k.as_bytes()) {
            Some(slot) => slot.1 = i,
            None => v.push((k.as_bytes().into(), i, common.role(k.as_bytes()))),
        }
    }
    v
}

impl Conf {
    pub fn from_element(e: &Element, common: &Common) -> Result<Conf, ConfigError> {
        let keys = e.array("keys")?.ok_or_else(|| ConfigError::at(&e.pos, "'keys' parameter is required"))?;
        let fast = e.enum_of("parser_engine", &["normal", "fast"])?.or(e.enum_of("parser_type", &["normal", "fast"])?);
        let delimiter = e.string_or("delimiter", ",");
        if delimiter.is_empty() {
            return Err(ConfigError::at(&e.pos, "delimiter must not be empty"));
        }
        Ok(Conf {
            layout: layout(&keys, common),
            delimiter: delimiter.into_bytes().into(),
            fast: fast.as_deref() == Some("fast"),
        })
    }
}

/// Where a column's text is.
#[derive(Debug, Clone, Copy)]
enum Span {
    Nil,
    /// `text[a..b]`
    Text(usize, usize),
    /// `unescaped[a..b]`
    Unesc(usize, usize),
}

#[derive(Debug)]
pub struct CsvParser {
    conf: Conf,
    spans: Vec<Span>,
    unesc: Vec<u8>,
    /// Column bounds of the fast engine (reused).
    cols: Vec<(usize, usize)>,
}

impl CsvParser {
    pub fn new(conf: Conf) -> Self {
        CsvParser { conf, spans: Vec::new(), unesc: Vec::new(), cols: Vec::new() }
    }

    /// Ruby's CSV.parse_line: the first row of `text`.
    fn split_normal(&mut self, text: &[u8]) -> Result<(), ParseError> {
        let d = &*self.conf.delimiter;
        let mut i = 0;
        loop {
            if text.get(i) == Some(&b'"') {
                let start = self.unesc.len();
                i += 1;
                loop {
                    match memchr::memchr(b'"', &text[i..]) {
                        None => return Err(ParseError::Csv("Unclosed quoted field")),
                        Some(q) => {
                            self.unesc.extend_from_slice(&text[i..i + q]);
                            i += q + 1;
                            if text.get(i) == Some(&b'"') {
                                self.unesc.push(b'"');
                                i += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
                self.spans.push(Span::Unesc(start, self.unesc.len()));
                if text[i..].starts_with(d) {
                    i += d.len();
                    continue;
                }
                if matches!(&text[i..], [] | [b'\n'] | [b'\r'] | [b'\r', b'\n'] | [b'\n', ..] | [b'\r', ..]) {
                    return Ok(());
                }
                return Err(ParseError::Csv("Any value after quoted field isn't allowed"));
            }
            // An unquoted field runs to the delimiter or the end of the row.
            let rest = &text[i..];
            let row_end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
            let end = match memchr::memmem::find(&rest[..row_end], d) {
                Some(e) => e,
                None => row_end,
            };
            let field = &rest[..end];
            if memchr::memchr(b'"', field).is_some() {
                return Err(ParseError::Csv("Illegal quoting"));
            }
            self.spans.push(if field.is_empty() { Span::Nil } else { Span::Text(i, i + end) });
            if end < row_end {
                i += end + d.len();
                continue;
            }
            return Ok(());
        }
    }

    /// fluentd's `parse_fast_internal`.
    fn split_fast(&mut self, text: &[u8]) {
        let t = text
            .strip_suffix(b"\r\n")
            .or_else(|| text.strip_suffix(b"\n"))
            .or_else(|| text.strip_suffix(b"\r"))
            .unwrap_or(text);
        if t.is_empty() {
            return;
        }
        let d = &*self.conf.delimiter;
        let mut cols = std::mem::take(&mut self.cols);
        cols.clear();
        let mut at = 0;
        while let Some(e) = memchr::memmem::find(&t[at..], d) {
            cols.push((at, at + e));
            at += e + d.len();
        }
        cols.push((at, t.len()));
        let mut j = 0;
        while j < cols.len() {
            let (s, e) = cols[j];
            let col = &t[s..e];
            let quotes = memchr::memchr_iter(b'"', col).count();
            let span = match quotes {
                0 if col.is_empty() => Span::Nil,
                0 => Span::Text(s, e),
                1 if col.starts_with(b"\"") => {
                    // Merge columns up to one that ends with a quote; drop the outer quotes.
                    let mut k = j + 1;
                    while k < cols.len() && !t[cols[k].0..cols[k].1].ends_with(b"\"") {
                        k += 1;
                    }
                    let last = k.min(cols.len() - 1);
                    j = last;
                    let (ms, me) = (s, cols[last].1);
                    if me - ms >= 2 {
                        Span::Text(ms + 1, me - 1)
                    } else {
                        Span::Text(ms, ms)
                    }
                }
                1 => Span::Text(s, e),
                2 if col.len() >= 2 && col.starts_with(b"\"") && col.ends_with(b"\"") => Span::Text(s + 1, e - 1),
                2 => Span::Text(s, e),
                _ => {
                    let inner = if col.len() >= 2 && col.starts_with(b"\"") && col.ends_with(b"\"") {
                        &col[1..col.len() - 1]
                    } else {
                        col
                    };
                    let start = self.unesc.len();
                    let mut k = 0;
                    while k < inner.len() {
                        self.unesc.push(inner[k]);
                        k += if inner[k] == b'"' && inner.get(k + 1) == Some(&b'"') { 2 } else { 1 };
                    }
                    Span::Unesc(start, self.unesc.len())
                }
            };
            self.spans.push(span);
            j += 1;
        }
        self.cols = cols;
    }

    pub fn parse<S: Sink>(&mut self, ctx: &mut Ctx, text: &[u8], out: &mut Vec<u8>, sink: &mut S) {
        self.spans.clear();
        self.unesc.clear();
        if self.conf.fast {
            self.split_fast(text);
        } else {
            if text.is_empty() {
                // CSV.parse_line("") is nil: fluentd yields nil, nil.
                sink.error(ParseError::NoMatch);
                return;
            }
            if let Err(e) = self.split_normal(text) {
                sink.error(e);
                return;
            }
        }
        let (spans, unesc, layout) = (&self.spans, &self.unesc, &self.conf.layout);
        emit(out, sink, |out| {
            let mut r = Rec::begin(out, None);
            for (key, col, role) in layout {
                match spans.get(*col).copied().unwrap_or(Span::Nil) {
                    Span::Nil => r.nil_with_role(ctx, key, *role),
                    Span::Text(a, b) => r.str(ctx, key, *role, &text[a..b]),
                    Span::Unesc(a, b) => r.str(ctx, key, *role, &unesc[a..b]),
                }
            }
            Ok(r.finish(ctx)?)
        });
    }
}
