//! parser_json's fast path: JSON text straight into records, in one pass, through
//! [`Rec`]: no intermediate msgpack document is built and walked again, which is what
//! the serde_json path costs (S8: 6,650 instructions per R1 event in `Handler::handle`,
//! half of them in the second walk).
//!
//! A text that is not JSON must emit nothing (fluentd's parser raises before it yields
//! a record). A sink that can take records back ([`Sink::can_roll_back`]: the input
//! batches) gets them written straight into its buffer, its errors once the whole text
//! has parsed, and a rollback if it does not; other sinks get records staged in a
//! reused buffer and handed over once the whole text has parsed. The reader is strict
//! (RFC 8259 as serde_json reads it: UTF-8, escapes, surrogate pairs, no leading
//! zeros); whatever it does not take (invalid JSON, records nested deeper than
//! `RECORD_DEPTH`, a number that may be out of f64's range) is a [`Fallback`]: the
//! caller takes the serde_json path, which names the error and its offset. So the fast
//! path only has to be right on the texts it accepts; the parser tests compare both
//! paths.
//!
//! Numbers are written as the serde_json path writes them: integers as the smallest
//! msgpack int (`-0` and integers past the 64-bit ranges as floats), the others as
//! float64, parsed with correct rounding (Ruby's strtod does the same).
//!
//! The reader keeps a [`Memo`] of the keys of the record read before (a batch's
//! records mostly share their keys): a key found where the memo has it is not scanned,
//! hashed or compared with the record's other keys again. Past the memo, the reader
//! keeps a [`Layout`] of one record: the text between its values (`{"host":`,
//! `,"level":`, ... `}`) and its keys as msgpack. A record whose text between values is
//! byte for byte the layout's is written without reading its keys at all (callgrind:
//! about half of what an S8 record cost went to finding, checking and bookkeeping
//! its keys).

use std::ops::Range;

use spate_protocol::encode::raw;
use spate_protocol::ValueRef;

use super::record::{put_str, Ctx, Dedup, Rec};
use super::time::TimeError;
use super::{emit, ParseError, Sink};
use spate_protocol::EventTime;

/// Containers nested this deep in a record (a field's value is at depth 1, inside the
/// record's map) take the serde_json path, which rejects them: a record is at most
/// [`super::RECORD_DEPTH`] levels deep.
const DEPTH: u32 = super::RECORD_DEPTH as u32;

/// The text is not one the fast path takes; use the serde_json path.
#[derive(Debug)]
pub(crate) struct Fallback;

/// One staged element of the text: a record (its bytes in `staged`, its time), or an
/// array element that is not an object.
type Staged = Option<(Range<usize>, Result<Option<EventTime>, TimeError>)>;

/// Reused buffers.
#[derive(Debug, Default)]
pub(crate) struct Direct {
    /// The records of the text being parsed, for sinks that cannot take records back.
    staged: Vec<u8>,
    elements: Vec<Staged>,
    /// Errors of the text being parsed, for sinks that can take records back (given
    /// to the sink once the whole text has parsed).
    errors: Vec<ParseError>,
    scratch: Scratch,
}

/// Scratch space of one record.
#[derive(Debug, Default)]
struct Scratch {
    /// A value for [`Rec::value`] (keys the common parameters apply to), or a skipped
    /// array element.
    value: Vec<u8>,
    /// An unescaped key.
    key: Vec<u8>,
    /// An unescaped string value.
    text: Vec<u8>,
    memo: Memo,
    layout: Layout,
}

/// The keys of a record read before, in order, as its text had them (quotes
/// included). It ends before the first key that had an escape, was longer than
/// `MEMO_KEY_LEN`, came after `MEMO_KEYS` others, or came once the deduplication had
/// listed the record (a repeat, or two keys with one hash). The records of one text (a
/// batch) and of one sender's texts mostly have the same keys in the same order.
///
/// A key found where the memo has it, after keys that all were the memo's, ends where
/// the memo says and has the memo's hash and role. A plain key there is not a repeat
/// of the record's keys before it: they are the memo's keys, and the memo's record had
/// not repeated a plain key up to there. That skips the scan for its end, its hash and
/// the comparison with the other keys (callgrind: about a third of what a short key
/// cost). Keys that are not plain (the time key, `types`) go through [`Rec::value`]
/// and its full check either way, so they may repeat in the memo.
#[derive(Debug, Default)]
struct Memo {
    bytes: Vec<u8>,
    keys: Vec<MemoKey>,
}

#[derive(Debug, Clone, Copy)]
struct MemoKey {
    /// Where its text (with quotes) starts in `bytes`, and its length.
    at: u32,
    len: u32,
    hash: u64,
    /// `Common::plain`.
    plain: bool,
}

/// Keys a memo holds: the first 16 (what the deduplication hashes before it lists).
const MEMO_KEYS: usize = 16;
/// The longest key text (with quotes) a memo holds.
const MEMO_KEY_LEN: usize = 64;

impl Memo {
    /// The memo's key `f` if the text at `j` starts with it.
    #[inline(always)]
    fn at(&self, f: usize, s: &[u8], j: usize) -> Option<MemoKey> {
        let m = *self.keys.get(f)?;
        let (at, n) = (m.at as usize, m.len as usize);
        super::record::short_eq(s.get(j..j + n)?, self.bytes.get(at..at + n)?).then_some(m)
    }

    /// Keeps the first `f` keys.
    fn truncate(&mut self, f: usize) {
        if let Some(m) = self.keys.get(f) {
            self.bytes.truncate(m.at as usize);
            self.keys.truncate(f);
        }
    }

    /// Adds key `f`, whose text (quotes included) is `quoted`, if the memo holds the
    /// `f` keys before it.
    fn add(&mut self, f: usize, quoted: &[u8], plain: bool) {
        if self.keys.len() != f || f >= MEMO_KEYS || quoted.len() > MEMO_KEY_LEN || quoted.len() < 2 {
            return;
        }
        let hash = super::record::key_hash(&quoted[1..quoted.len() - 1]);
        self.keys.push(MemoKey { at: self.bytes.len() as u32, len: quoted.len() as u32, hash, plain });
        self.bytes.extend_from_slice(quoted);
    }
}

/// Where the records of a text go while it is parsed. A record's time goes to `end`
/// from inside [`record`] rather than being returned with its end: returned through
/// the stack, it was stored in pieces and read back with wider loads, a
/// store-forwarding stall per record (perf: about 7% of S8's cycles).
trait Records {
    /// Starts a record (between the sink's `begin` and `record`): the buffer to write
    /// it into.
    fn begin(&mut self) -> &mut Vec<u8>;
    /// Ends the record begun last, which gave `time`.
    fn end(&mut self, time: RecTime);
    /// An array element that is not an object.
    fn not_object(&mut self);
    /// Drops what was written since the record begun last (which did not end): the
    /// layout missed and the record is read again from its start.
    fn abandon(&mut self);
}

type RecTime = Result<Option<EventTime>, TimeError>;

/// Straight into the caller's buffer and sink, which can take the records back.
struct Straight<'a, S: Sink> {
    out: &'a mut Vec<u8>,
    sink: &'a mut S,
    errors: &'a mut Vec<ParseError>,
    records: u32,
    /// Where the record begun last starts.
    mark: usize,
}

impl<S: Sink> Records for Straight<'_, S> {
    #[inline]
    fn begin(&mut self) -> &mut Vec<u8> {
        self.mark = self.out.len();
        self.sink.begin(self.out);
        self.out
    }
    #[inline]
    fn end(&mut self, time: RecTime) {
        match time {
            Ok(t) => {
                self.sink.record(self.out, t);
                self.records += 1;
            }
            Err(e) => {
                self.out.truncate(self.mark);
                self.errors.push(ParseError::Time(e));
            }
        }
    }
    fn not_object(&mut self) {
        self.errors.push(ParseError::NotObject);
    }
    #[inline]
    fn abandon(&mut self) {
        self.out.truncate(self.mark);
    }
}

/// Into `staged`, handed to the sink once the whole text has parsed.
struct Staging<'a> {
    staged: &'a mut Vec<u8>,
    elements: &'a mut Vec<Staged>,
    /// Where the record begun last starts.
    from: usize,
}

impl Records for Staging<'_> {
    #[inline]
    fn begin(&mut self) -> &mut Vec<u8> {
        self.from = self.staged.len();
        self.staged
    }
    #[inline]
    fn end(&mut self, time: RecTime) {
        self.elements.push(Some((self.from..self.staged.len(), time)));
    }
    fn not_object(&mut self) {
        self.elements.push(None);
    }
    #[inline]
    fn abandon(&mut self) {
        self.staged.truncate(self.from);
    }
}

impl Direct {
    /// Records written through the layout so far.
    #[cfg(test)]
    pub(crate) fn layout_hits(&self) -> usize {
        self.scratch.layout.hits
    }

    /// Writes the records of `s` (an object, or an array of objects), or returns
    /// [`Fallback`] having written nothing.
    pub(crate) fn parse<S: Sink>(
        &mut self,
        ctx: &mut Ctx,
        dedup: &mut Dedup,
        s: &[u8],
        out: &mut Vec<u8>,
        sink: &mut S,
    ) -> Result<(), Fallback> {
        if sink.can_roll_back() {
            self.errors.clear();
            let mark = out.len();
            let mut into = Straight { out, sink, errors: &mut self.errors, records: 0, mark: 0 };
            if let Err(f) = text(ctx, dedup, &mut self.scratch, s, &mut into) {
                let n = into.records;
                out.truncate(mark);
                sink.rollback(n);
                return Err(f);
            }
            for e in self.errors.drain(..) {
                sink.error(e);
            }
            return Ok(());
        }
        self.staged.clear();
        self.elements.clear();
        text(
            ctx,
            dedup,
            &mut self.scratch,
            s,
            &mut Staging { staged: &mut self.staged, elements: &mut self.elements, from: 0 },
        )?;
        for e in &self.elements {
            match e {
                Some((range, time)) => emit(out, sink, |out| {
                    out.extend_from_slice(&self.staged[range.clone()]);
                    Ok((*time)?)
                }),
                None => sink.error(ParseError::NotObject),
            }
        }
        Ok(())
    }
}

/// Parses the text `s` (an object, or an array of objects) into `into`.
fn text(ctx: &mut Ctx, dedup: &mut Dedup, sc: &mut Scratch, s: &[u8], into: &mut impl Records) -> Result<(), Fallback> {
    let start = ws(s, 0);
    let end = match s.get(start) {
        Some(b'{') => record(ctx, dedup, sc, s, start, into)?,
        Some(b'[') => {
            let mut i = ws(s, start + 1);
            if s.get(i) == Some(&b']') {
                i + 1
            } else {
                loop {
                    i = if s.get(i) == Some(&b'{') {
                        record(ctx, dedup, sc, s, i, into)?
                    } else {
                        sc.value.clear();
                        into.not_object();
                        write_value(s, i, &mut sc.value, &mut sc.text, 1).ok_or(Fallback)?
                    };
                    i = ws(s, i);
                    match s.get(i) {
                        Some(b',') => i = ws(s, i + 1),
                        Some(b']') => break i + 1,
                        _ => return Err(Fallback),
                    }
                }
            }
        }
        Some(_) => {
            sc.value.clear();
            into.not_object();
            write_value(s, start, &mut sc.value, &mut sc.text, 0).ok_or(Fallback)?
        }
        None => return Err(Fallback),
    };
    if ws(s, end) != s.len() {
        return Err(Fallback);
    }
    Ok(())
}

/// Writes the object at `i` as one record into `into`; returns its end.
#[inline]
fn record(
    ctx: &mut Ctx,
    dedup: &mut Dedup,
    sc: &mut Scratch,
    s: &[u8],
    i: usize,
    into: &mut impl Records,
) -> Result<usize, Fallback> {
    let layout = &mut sc.layout;
    if layout.wait == 0 {
        if !layout.fields.is_empty() {
            if let Some(end) = layout.record(s, i, into.begin(), &mut sc.text) {
                into.end(Ok(super::record::estimate(ctx)));
                #[cfg(test)]
                {
                    layout.hits += 1;
                }
                return Ok(end);
            }
            into.abandon();
            layout.fields.clear();
            layout.wait = MISS_WAIT;
        }
    } else {
        layout.wait -= 1;
    }
    let mut r = Rec::begin(into.begin(), Some(dedup));
    let end = fields(ctx, sc, s, i, &mut r).ok_or(Fallback)?;
    let time = r.finish(ctx);
    into.end(time);
    let layout = &mut sc.layout;
    if layout.fields.is_empty() && layout.wait == 0 && layout.learn(ctx, s, i, &mut sc.value, &mut sc.text).is_none() {
        layout.wait = LEARN_WAIT;
    }
    Ok(end)
}

/// Records read without the layout after one that it missed, before the next is
/// learned: a text whose records alternate between layouts pays for a miss and a
/// learn once in this many records, not on every one.
const MISS_WAIT: u32 = 8;
/// Records read without the layout after one it could not be learned from (a time
/// key, `types`, an escaped or repeated key, more than 15 fields).
const LEARN_WAIT: u32 = 32;
/// Fields a layout holds: what a fixmap holds, the header `Rec` writes for them.
const LAYOUT_FIELDS: usize = 15;
/// The longest text between two values a layout holds.
const LAYOUT_LIT: usize = 64;
/// Each key's msgpack string sits in a slot of this many bytes, copied whole.
const KEY_SLOT: usize = 32;

/// The layout of a record read before (see the module doc): the text before each
/// value (from the record's `{`, or from the value before), the text after the last
/// value up to its `}`, and each key as the msgpack string [`Rec`] writes. Only
/// records whose keys are all [`Common::plain`](super::record::Common::plain), distinct,
/// without escapes and shorter than 31 bytes, with 1 to 15 fields, are learned: for
/// those, [`fields`] writes a map of the keys in text order, each followed by
/// [`field_value`]'s value (no common parameter applies, no key repeats, no time key),
/// and the record's time is [`estimate`](super::record::estimate)'s. A record whose
/// text between values is the layout's byte for byte has the same keys in the same
/// order, so it gets the same map by copying the keys and writing each value with
/// [`field_value`]; a value that does not read (or white space where the layout had
/// none) is a miss, and the record is read again by [`fields`].
#[derive(Debug, Default)]
struct Layout {
    /// The texts between values, back to back, then `LAYOUT_LIT` bytes of padding (a
    /// 16-byte comparison may read past the last).
    lits: Vec<u8>,
    /// Key `f`'s msgpack string at `f * KEY_SLOT`, its slot zero-filled after it.
    keys: Vec<u8>,
    /// Per field (none while no layout is learned): where its text before the value
    /// starts in `lits`, that text's length, its key's msgpack length.
    fields: Vec<(u16, u8, u8)>,
    /// The text after the last value, through the record's `}`.
    tail: (u16, u8),
    /// Records to read without the layout before it is used or learned again.
    wait: u32,
    /// Records written through the layout (the tests check it is what they compare).
    #[cfg(test)]
    hits: usize,
}

impl Layout {
    /// Writes the record at `i` (its `{`) into `out` if its text between values is the
    /// layout's; returns its end. On None, `out` holds a partial record.
    #[inline(always)]
    fn record(&self, s: &[u8], i: usize, out: &mut Vec<u8>, text: &mut Vec<u8>) -> Option<usize> {
        out.push(0x80 | self.fields.len() as u8);
        let mut j = i;
        for (f, &(at, n, kl)) in self.fields.iter().enumerate() {
            if !lit_eq(s, j, &self.lits, at as usize, n as usize) {
                return None;
            }
            j += n as usize;
            put_slot(out, &self.keys, f * KEY_SLOT, kl as usize);
            j = field_value(s, j, out, text)?;
        }
        let (at, n) = self.tail;
        lit_eq(s, j, &self.lits, at as usize, n as usize).then_some(j + n as usize)
    }

    /// Learns the layout of the record at `i`, which [`fields`] has just read whole,
    /// or returns None (the layout is then empty). `value` and `text`: scratch.
    #[cold]
    fn learn(&mut self, ctx: &Ctx, s: &[u8], i: usize, value: &mut Vec<u8>, text: &mut Vec<u8>) -> Option<()> {
        self.lits.clear();
        self.keys.clear();
        self.fields.clear();
        let r = self.learn_fields(ctx, s, i, value, text);
        if r.is_none() {
            self.fields.clear();
        }
        r
    }

    fn learn_fields(&mut self, ctx: &Ctx, s: &[u8], i: usize, value: &mut Vec<u8>, text: &mut Vec<u8>) -> Option<()> {
        let mut lit = i;
        let mut j = ws(s, i + 1);
        loop {
            if s.get(j) != Some(&b'"') || self.fields.len() == LAYOUT_FIELDS {
                return None;
            }
            let (ke, esc) = string_end(s, j + 1)?;
            let k = s.get(j + 1..ke)?;
            if esc || k.len() >= KEY_SLOT - 1 || !ctx.common.plain(k) {
                return None;
            }
            let at = self.keys.len();
            raw::str(&mut self.keys, k);
            let kl = self.keys.len() - at;
            if (0..self.fields.len())
                .any(|f| self.keys[f * KEY_SLOT..f * KEY_SLOT + self.fields[f].2 as usize] == self.keys[at..])
            {
                return None;
            }
            self.keys.resize(at + KEY_SLOT, 0);
            let v = colon(s, ke + 1)?;
            let n = v - lit;
            if n > LAYOUT_LIT {
                return None;
            }
            self.fields.push((self.lits.len() as u16, n as u8, kl as u8));
            self.lits.extend_from_slice(s.get(lit..v)?);
            value.clear();
            let e = field_value(s, v, value, text)?;
            let c = ws(s, e);
            match s.get(c)? {
                b',' => j = ws(s, c + 1),
                b'}' => {
                    let n = c + 1 - e;
                    if n > LAYOUT_LIT {
                        return None;
                    }
                    self.tail = (self.lits.len() as u16, n as u8);
                    self.lits.extend_from_slice(s.get(e..=c)?);
                    self.lits.resize(self.lits.len() + LAYOUT_LIT, 0);
                    return Some(());
                }
                _ => return None,
            }
            lit = e;
        }
    }
}

/// Whether `s[j..j + n]` is `lits[at..at + n]` (`lits` has 16 bytes after it).
#[inline(always)]
fn lit_eq(s: &[u8], j: usize, lits: &[u8], at: usize, n: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if n <= 16 && j + 16 <= s.len() && at + 16 <= lits.len() {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
        // SAFETY: both 16-byte unaligned loads stay inside their slices (checked just
        // above); SSE2 is part of the x86_64 baseline.
        let eq = unsafe {
            let a = _mm_loadu_si128(s.as_ptr().add(j).cast());
            let b = _mm_loadu_si128(lits.as_ptr().add(at).cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(a, b)) as u32
        };
        // Equal in the first n bytes: the bits beyond n do not count.
        return (eq | (0xffff_u32 << n)) & 0xffff == 0xffff;
    }
    match (s.get(j..j + n), lits.get(at..at + n)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Appends the first `n` bytes of the `KEY_SLOT`-byte slot at `at` of `keys`: one
/// 32-byte copy, not a call to memcpy for a few bytes.
#[inline(always)]
fn put_slot(out: &mut Vec<u8>, keys: &[u8], at: usize, n: usize) {
    let Some(slot) = keys.get(at..at + KEY_SLOT) else { return };
    out.reserve(KEY_SLOT);
    let len = out.len();
    // SAFETY: `slot` is KEY_SLOT readable bytes; the reserve makes room for KEY_SLOT
    // bytes after `len`; set_len counts only the `n <= KEY_SLOT` bytes of the key
    // (the rest is spare capacity, overwritten later).
    unsafe {
        std::ptr::copy_nonoverlapping(slot.as_ptr(), out.as_mut_ptr().add(len), KEY_SLOT);
        out.set_len(len + n.min(KEY_SLOT));
    }
}

/// The fields of the object at `i` into `r`; returns the object's end. A function of
/// its own, inlined, rather than a closure: LLVM stopped inlining the closure once
/// the memo was added, and `r` then lived in memory (about 20% slower in-process).
#[inline(always)]
fn fields(ctx: &mut Ctx, sc: &mut Scratch, s: &[u8], i: usize, r: &mut Rec<'_>) -> Option<usize> {
    let Scratch { value, key, text, memo, .. } = sc;
    let mut j = ws(s, i + 1);
    if s.get(j) == Some(&b'}') {
        return Some(j + 1);
    }
    // Field `f`; whether keys 0..f were all the memo's.
    let (mut f, mut hit) = (0usize, true);
    loop {
        if s.get(j) != Some(&b'"') {
            return None;
        }
        let j0 = j;
        // Two paths on purpose: a key the memo has (the usual one) and the others. One
        // path for both, with the memo's entry as an Option, cost about 100 more
        // instructions per S8 record (callgrind) and was slower in process.
        if let Some(m) = if hit { memo.at(f, s, j) } else { None } {
            let ke = j + m.len as usize - 1;
            j = colon(s, ke + 1)?;
            j = if m.plain {
                let at = r.key_hashed(s, j0 + 1, ke, m.hash);
                let e = field_value(s, j, r.out, text)?;
                r.end_field_fresh(at);
                e
            } else {
                value.clear();
                let e = write_value(s, j, value, text, 1)?;
                r.value(ctx, &s[j0 + 1..ke], ValueRef::new(value)?);
                e
            };
        } else {
            if hit {
                hit = false;
                memo.truncate(f);
            }
            let (ke, esc) = string_end(s, j + 1)?;
            let k: &[u8] = if esc {
                key.clear();
                unescape(s.get(j + 1..ke)?, key)?;
                key
            } else {
                s.get(j + 1..ke)?
            };
            j = colon(s, ke + 1)?;
            let plain = ctx.common.plain(k);
            j = if !plain {
                value.clear();
                let e = write_value(s, j, value, text, 1)?;
                r.value(ctx, k, ValueRef::new(value)?);
                e
            } else {
                // The key, the value straight after it, the field's end: not a Rec
                // method taking the value's writer as a closure, which LLVM did not
                // always inline (the record's state then went through memory).
                let at = if esc { r.key(k) } else { r.key_in(s, j0 + 1, ke) };
                let e = field_value(s, j, r.out, text)?;
                r.end_field(at);
                e
            };
            if !esc && r.unrepeated() {
                memo.add(f, &s[j0..=ke], plain);
            }
        }
        f += 1;
        // The usual case, no white space, without ws()'s load of the same byte.
        let mut c = *s.get(j)?;
        if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            j = ws(s, j);
            c = *s.get(j)?;
        }
        match c {
            b',' => j = if s.get(j + 1) == Some(&b'"') { j + 1 } else { ws(s, j + 1) },
            b'}' => return Some(j + 1),
            _ => return None,
        }
    }
}

/// From just after a key: just after the colon that must follow it and the white space
/// after that.
#[inline(always)]
fn colon(s: &[u8], i: usize) -> Option<usize> {
    let j = if s.get(i) == Some(&b':') { i } else { ws(s, i) };
    (s.get(j) == Some(&b':')).then(|| ws(s, j + 1))
}

#[inline]
fn ws(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = s.get(i) {
        i += 1;
    }
    i
}

/// The index of the first `"`, `\` or control character at or after `i`, and whether it
/// is the quote; sets `high`
/// if a byte from 0x80 was passed on the way (possibly also one just after the answer:
/// `high` only asks for a UTF-8 check).
#[cfg(target_arch = "x86_64")]
#[inline]
fn special(s: &[u8], mut i: usize, high: &mut bool) -> Option<(usize, bool)> {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    // Sixteen bytes at a time with SSE2, which every x86_64 CPU has: a string's end
    // is found in a few instructions per 16 bytes rather than per byte. The blocks
    // passed are OR-ed together and their high bits read once at the end, and which
    // kind of byte ended the string is read from its block only then: one mask per
    // block on the way (callgrind: about a quarter fewer instructions per block).
    // SAFETY: SSE2 is part of the x86_64 baseline, so the intrinsic is always available.
    let mut seen: __m128i = unsafe { _mm_setzero_si128() };
    // SAFETY: as above.
    let high_in = |seen: __m128i| unsafe { _mm_movemask_epi8(seen) } != 0;
    while i + 16 <= s.len() {
        // SAFETY: i + 16 <= s.len(), so the unaligned 16-byte load stays inside `s`;
        // SSE2 is part of the x86_64 baseline, so the intrinsics are always available.
        let (m, quote) = unsafe {
            let v = _mm_loadu_si128(s.as_ptr().add(i).cast());
            seen = _mm_or_si128(seen, v);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // v <= 0x1f (unsigned) exactly when min(v, 0x1f) == v.
            let ctrl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            (_mm_movemask_epi8(_mm_or_si128(quote, _mm_or_si128(slash, ctrl))), quote)
        };
        if m != 0 {
            // Whether the first one is the quote comes from the block's quote mask,
            // not from loading the byte again (that load was on the path of every
            // string).
            let p = m.trailing_zeros();
            *high |= high_in(seen);
            // SAFETY: as above.
            let q = unsafe { _mm_movemask_epi8(quote) };
            return Some((i + p as usize, q >> p & 1 == 1));
        }
        i += 16;
    }
    *high |= high_in(seen);
    special_tail(s, i, high)
}

/// [`special`] without SIMD: eight bytes at a time, then byte by byte.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn special(s: &[u8], mut i: usize, high: &mut bool) -> Option<(usize, bool)> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte of each test is exact (a borrow only flags bytes above a
    // true one), so the lowest of the three is the answer.
    while let Some(w) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(w.try_into().ok()?);
        *high |= w & HI != 0;
        let q = w ^ (LO * b'"' as u64);
        let b = w ^ (LO * b'\\' as u64);
        let m = ((q.wrapping_sub(LO) & !q) | (b.wrapping_sub(LO) & !b) | (w.wrapping_sub(LO * 0x20) & !w)) & HI;
        if m != 0 {
            let at = i + (m.trailing_zeros() / 8) as usize;
            return Some((at, s[at] == b'"'));
        }
        i += 8;
    }
    special_tail(s, i, high)
}

#[inline]
fn special_tail(s: &[u8], mut i: usize, high: &mut bool) -> Option<(usize, bool)> {
    while let Some(&c) = s.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return Some((i, c == b'"'));
        }
        *high |= c >= 0x80;
        i += 1;
    }
    None
}

fn hex4(h: &[u8]) -> Option<u32> {
    let h = h.get(..4)?;
    h.iter().try_fold(0u32, |acc, &c| Some(acc << 4 | (c as char).to_digit(16)?))
}

/// From just after an opening quote: the closing quote's index and whether the string
/// has escapes. None for a control character, a bad escape, a lone surrogate, invalid
/// UTF-8 or no end.
#[inline(always)]
fn string_end(s: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let (from, mut esc, mut high) = (i, false, false);
    loop {
        let quote;
        (i, quote) = special(s, i, &mut high)?;
        if quote {
            // Bytes from 0x80 are only taken inside strings (elsewhere they are a
            // syntax error, and the text falls back), so checking the strings that
            // have them checks the whole text: quotes and backslashes are ASCII and
            // cannot split a UTF-8 sequence.
            return (!high || std::str::from_utf8(&s[from..i]).is_ok()).then_some((i, esc));
        }
        match s[i] {
            b'\\' => {
                esc = true;
                match *s.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let c = hex4(s.get(i + 2..)?)?;
                        if (0xd800..0xdc00).contains(&c) {
                            if s.get(i + 6..i + 8)? != b"\\u" || !(0xdc00..0xe000).contains(&hex4(s.get(i + 8..)?)?) {
                                return None;
                            }
                            i += 12;
                        } else if (0xdc00..0xe000).contains(&c) {
                            return None;
                        } else {
                            i += 6;
                        }
                    }
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

/// The string content `s` (checked) with its escapes decoded, appended to `out`.
fn unescape(s: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', s.get(i..)?) {
        out.extend_from_slice(&s[i..i + p]);
        i += p;
        let c = match *s.get(i + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let hi = hex4(s.get(i + 2..)?)?;
                let cp = if (0xd800..0xdc00).contains(&hi) {
                    let lo = hex4(s.get(i + 8..)?)?;
                    i += 6;
                    0x10000 + ((hi - 0xd800) << 10) + (lo.checked_sub(0xdc00)?)
                } else {
                    hi
                };
                i += 4;
                char::from_u32(cp)?
            }
        };
        i += 2;
        let mut b = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
    }
    out.extend_from_slice(s.get(i..)?);
    Some(())
}

/// A number at `i`: its end, whether it is an integer literal, and whether its value is
/// surely finite as an f64 (integer digits plus exponent at most 308).
fn number_end(s: &[u8], mut i: usize) -> Option<(usize, bool, bool)> {
    let digits = |s: &[u8], mut i: usize| {
        let from = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i, i - from)
    };
    if s.get(i) == Some(&b'-') {
        i += 1;
    }
    let int_digits;
    match s.get(i)? {
        b'0' => {
            i += 1;
            int_digits = 1;
        }
        b'1'..=b'9' => (i, int_digits) = digits(s, i),
        _ => return None,
    }
    let mut int = true;
    if s.get(i) == Some(&b'.') {
        int = false;
        let (e, n) = digits(s, i + 1);
        if n == 0 {
            return None;
        }
        i = e;
    }
    let mut exp: i64 = 0;
    if let Some(b'e' | b'E') = s.get(i) {
        int = false;
        i += 1;
        let neg = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let (e, n) = digits(s, i);
        if n == 0 {
            return None;
        }
        for &d in &s[i..e] {
            exp = (exp * 10 + (d - b'0') as i64).min(100_000);
        }
        if neg {
            exp = -exp;
        }
        i = e;
    }
    Some((i, int, int_digits as i64 + exp <= 308))
}

/// [`write_value`] for a field's value, with strings (most values) and small
/// non-negative integers read inline: the call to the recursive writer cost about as
/// much as a short string.
#[inline(always)]
fn field_value(s: &[u8], i: usize, out: &mut Vec<u8>, text: &mut Vec<u8>) -> Option<usize> {
    match s.get(i) {
        Some(b'"') => string_value(s, i, out, text),
        Some(b'1'..=b'9') => {
            // A small non-negative integer (a status, a size, a count) read in one
            // pass; anything else (a fraction, an exponent, 19 digits or more) goes
            // to write_value, which reads the number again.
            let mut v = 0u64;
            let mut j = i;
            while let Some(&d @ b'0'..=b'9') = s.get(j) {
                if j - i == 18 {
                    return write_value(s, i, out, text, 1);
                }
                v = v * 10 + (d - b'0') as u64;
                j += 1;
            }
            if let Some(b'.' | b'e' | b'E') = s.get(j) {
                return write_value(s, i, out, text, 1);
            }
            raw::uint(out, v);
            Some(j)
        }
        _ => write_value(s, i, out, text, 1),
    }
}

/// The string at `i` (its opening quote) as msgpack; returns its end.
#[inline(always)]
fn string_value(s: &[u8], i: usize, out: &mut Vec<u8>, text: &mut Vec<u8>) -> Option<usize> {
    let (e, esc) = string_end(s, i + 1)?;
    if esc {
        text.clear();
        unescape(s.get(i + 1..e)?, text)?;
        raw::str(out, text);
    } else {
        put_str(out, s, i + 1, e);
    }
    Some(e + 1)
}

/// Writes the value at `i` as msgpack; returns its end, or None for anything the fast
/// path does not take (the record is then dropped and the text falls back).
fn write_value(s: &[u8], i: usize, out: &mut Vec<u8>, text: &mut Vec<u8>, depth: u32) -> Option<usize> {
    match *s.get(i)? {
        c @ (b'{' | b'[') => {
            if depth >= DEPTH {
                return None;
            }
            let (map, close_c) = (c == b'{', if c == b'{' { b'}' } else { b']' });
            let hdr = out.len();
            out.push(0x80);
            let mut n = 0u32;
            let mut i = ws(s, i + 1);
            if s.get(i) == Some(&close_c) {
                raw::patch_header(out, hdr, 0, map);
                return Some(i + 1);
            }
            loop {
                if map {
                    if s.get(i) != Some(&b'"') {
                        return None;
                    }
                    i = ws(s, write_value(s, i, out, text, depth + 1)?);
                    if s.get(i) != Some(&b':') {
                        return None;
                    }
                    i = ws(s, i + 1);
                }
                i = ws(s, write_value(s, i, out, text, depth + 1)?);
                n = n.saturating_add(1);
                match *s.get(i)? {
                    b',' => i = ws(s, i + 1),
                    c if c == close_c => {
                        raw::patch_header(out, hdr, n, map);
                        return Some(i + 1);
                    }
                    _ => return None,
                }
            }
        }
        b'"' => string_value(s, i, out, text),
        b't' => {
            raw::bool(out, true);
            s[i..].starts_with(b"true").then_some(i + 4)
        }
        b'f' => {
            raw::bool(out, false);
            s[i..].starts_with(b"false").then_some(i + 5)
        }
        b'n' => {
            raw::nil(out);
            s[i..].starts_with(b"null").then_some(i + 4)
        }
        _ => {
            let (e, int, finite) = number_end(s, i)?;
            let lit = s.get(i..e)?;
            if int {
                let (neg, digits) = match lit.split_first() {
                    Some((b'-', d)) => (true, d),
                    _ => (false, lit),
                };
                let v = digits.iter().try_fold(0u64, |v, &d| v.checked_mul(10)?.checked_add((d - b'0') as u64));
                match (v, neg) {
                    (Some(v), false) => {
                        raw::uint(out, v);
                        return Some(e);
                    }
                    // serde_json: -0 and integers below i64::MIN are floats.
                    (Some(v), true) if v != 0 && v <= 1 << 63 => {
                        raw::int(out, (v as i64).wrapping_neg());
                        return Some(e);
                    }
                    _ => {}
                }
            }
            if !finite {
                return None;
            }
            let f: f64 = std::str::from_utf8(lit).ok()?.parse().ok()?;
            raw::f64(out, f);
            Some(e)
        }
    }
}
