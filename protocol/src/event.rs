//! Events as views into received bytes: [`EventTime`], the entry iterator [`Events`],
//! and lazy record access ([`RecordRef`], [`ValueRef`]) that walks msgpack in place.
//!
//! Iterating events never allocates; rendering a record as JSON writes into a caller's
//! buffer.

use crate::msgpack::{self, Head, Kind, MAX_DEPTH};
use crate::shape::Shapes;

/// Fluentd's EventTime: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    /// Seconds.
    pub sec: u32,
    /// Nanoseconds within the second.
    pub nsec: u32,
}

impl EventTime {
    /// `sec` seconds and `nsec` nanoseconds.
    pub const fn new(sec: u32, nsec: u32) -> Self {
        EventTime { sec, nsec }
    }

    /// The current system time (the epoch if the clock is before it).
    pub fn now() -> Self {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        EventTime { sec: d.as_secs() as u32, nsec: d.subsec_nanos() }
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(&self) -> u64 {
        self.sec as u64 * 1_000_000_000 + self.nsec as u64
    }

    /// Parses a time value as the Forward protocol allows it: EventTime (ext type 0,
    /// fixext8 or ext8), a non-negative integer of seconds that fits 32 bits, a float of
    /// seconds (fluentd rejects floats; spate accepts them), or fluent-bit's
    /// `[time, {metadata}]` array. Returns `None` for anything else (an invalid event).
    ///
    /// The common case (fixext8 type 0) is inlined into the caller: called, its result
    /// came back through the stack as two 4-byte stores read by one 8-byte load, a
    /// store-forwarding stall that was two thirds of `read_entry`'s cycles (perf, S1).
    #[inline(always)]
    pub fn from_msgpack(v: &[u8]) -> Option<EventTime> {
        if let [0xd7, 0x00, s0, s1, s2, s3, n0, n1, n2, n3] = *v {
            return Some(EventTime {
                sec: u32::from_be_bytes([s0, s1, s2, s3]),
                nsec: u32::from_be_bytes([n0, n1, n2, n3]),
            });
        }
        Self::from_msgpack_other(v)
    }

    /// [`EventTime::from_msgpack`] for every form but fixext8.
    #[inline(never)]
    fn from_msgpack_other(v: &[u8]) -> Option<EventTime> {
        match *v.first()? {
            0xd7 | 0xc7 => {
                let (ty, p) = msgpack::read_ext(v)?;
                if ty != 0 || p.len() != 8 {
                    return None;
                }
                let sec = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                let nsec = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                Some(EventTime { sec, nsec })
            }
            0xca | 0xcb => {
                let f = msgpack::read_float(v)?;
                if !(0.0..4_294_967_296.0).contains(&f) {
                    return None;
                }
                let sec = f.trunc();
                let nsec = ((f - sec) * 1e9).round().min(999_999_999.0);
                Some(EventTime { sec: sec as u32, nsec: nsec as u32 })
            }
            0x92 | 0xdc | 0xdd => {
                // fluent-bit's [EventTime, metadata] form.
                let hdr = match msgpack::head(v).ok()?? {
                    Head::Array { hdr, n: 2 } => hdr,
                    _ => return None,
                };
                let inner = &v[hdr..];
                if matches!(inner.first(), Some(0x92 | 0xdc | 0xdd)) {
                    return None; // one level of [time, metadata] only
                }
                let n = msgpack::skip(inner).ok()?;
                EventTime::from_msgpack(&inner[..n])
            }
            _ => {
                let i = msgpack::read_int(v)?;
                u32::try_from(i).ok().map(|sec| EventTime { sec, nsec: 0 })
            }
        }
    }
}

/// How a batch's `entries` bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntriesFormat {
    /// `[time, record]` arrays back to back (PackedForward, Forward body, inflated
    /// CompressedPackedForward).
    Packed,
    /// One event: `time` then `record`, not wrapped in an array (Message mode).
    Message,
}

impl EntriesFormat {
    /// Appends `raw` (an event's bytes in this format, [`Event::raw`]) to `out` as one
    /// packed `[time, record]` entry: a Message-mode event gets its array header.
    #[inline]
    pub fn append_packed(self, out: &mut Vec<u8>, raw: &[u8]) {
        if self == EntriesFormat::Message {
            out.push(0x92);
        }
        out.extend_from_slice(raw);
    }
}

/// One event, borrowing the batch's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The event's time (integer and float times converted).
    pub time: EventTime,
    /// The encoded time value exactly as received.
    pub time_raw: &'a [u8],
    /// The record (a map), read in place.
    pub record: RecordRef<'a>,
    /// The whole encoded entry: `[time, record]` for packed entries; `time record` (two
    /// values, no array header) in Message mode.
    pub raw: &'a [u8],
}

/// Result of checking one entry.
pub(crate) enum EntryCheck<'a> {
    Valid(Event<'a>),
    /// Structurally sound msgpack, but not a `[time, record]` pair (skip_invalid_event).
    Invalid,
}

/// Reads one entry at the start of `buf`; returns it and the bytes it used. Errors only
/// on malformed msgpack.
#[inline]
pub(crate) fn read_entry(
    buf: &[u8],
    format: EntriesFormat,
    max_depth: usize,
) -> crate::Result<(EntryCheck<'_>, usize)> {
    match format {
        EntriesFormat::Packed => {
            // Usually fixarray 0x92: walk time and record once, in place.
            if buf.first() == Some(&0x92) && max_depth > 0 {
                // Fast path: a scalar time (EventTime is fixext8) and a flat record map,
                // walked without recursion; anything else takes the general walk.
                if let (true, Some(tend)) = (max_depth >= 2, msgpack::scalar_end_fast(buf, 1)) {
                    if let Some(rend) = msgpack::flat_map_end(buf, tend) {
                        return Ok((check_pair(&buf[1..tend], &buf[tend..rend], &buf[..rend]), rend));
                    }
                }
                let tend = msgpack::value_end(buf, 1, 1, max_depth)?;
                let rend = msgpack::value_end(buf, tend, 1, max_depth)?;
                return Ok((check_pair(&buf[1..tend], &buf[tend..rend], &buf[..rend]), rend));
            }
            let len = msgpack::value_len(buf, max_depth)?;
            let raw = &buf[..len];
            // Usually fixarray 0x92; fluent-bit encodes entries as array32.
            let hdr = match raw[0] {
                0x92 => 1,
                _ => match msgpack::head(raw) {
                    Ok(Some(Head::Array { hdr, n: 2 })) => hdr,
                    _ => return Ok((EntryCheck::Invalid, len)),
                },
            };
            // Children are complete: value_len proved it.
            let body = &raw[hdr..];
            let tlen = msgpack::skip(body)?;
            Ok((check_pair(&body[..tlen], &body[tlen..], raw), len))
        }
        EntriesFormat::Message => {
            if let (true, Some(tend)) = (max_depth >= 1, msgpack::scalar_end_fast(buf, 0)) {
                if let Some(rend) = msgpack::flat_map_end(buf, tend) {
                    return Ok((check_pair(&buf[..tend], &buf[tend..rend], &buf[..rend]), rend));
                }
            }
            let tlen = msgpack::value_len(buf, max_depth)?;
            let rlen = msgpack::value_len(&buf[tlen..], max_depth).map_err(|e| e.at(tlen))?;
            let raw = &buf[..tlen + rlen];
            Ok((check_pair(&raw[..tlen], &raw[tlen..], raw), tlen + rlen))
        }
    }
}

/// One entry from its time and record bytes (`raw`: both, as the entry's bytes).
#[inline]
pub(crate) fn check_pair<'a>(time_raw: &'a [u8], rec: &'a [u8], raw: &'a [u8]) -> EntryCheck<'a> {
    let Some(time) = EventTime::from_msgpack(time_raw) else { return EntryCheck::Invalid };
    if !matches!(rec.first(), Some(0x80..=0x8f | 0xde | 0xdf)) {
        return EntryCheck::Invalid;
    }
    EntryCheck::Valid(Event { time, time_raw, record: RecordRef { raw: rec }, raw })
}

/// Iterator over the valid events of a batch; invalid entries are skipped (they were
/// counted when the frame was decoded). Packed entries with the layout of an entry
/// before them are checked against it rather than walked (see `shape.rs`).
#[derive(Debug, Clone)]
pub struct Events<'a> {
    buf: &'a [u8],
    format: EntriesFormat,
    shape: Shapes,
}

impl<'a> Events<'a> {
    /// Iterates entries that were validated by the decoder. On bytes that were not
    /// validated, iteration simply stops at the first malformed entry.
    pub fn new(buf: &'a [u8], format: EntriesFormat) -> Self {
        Events { buf, format, shape: Shapes::default() }
    }

    /// The packed entry at the start of `buf` as an event, if it has the layout of an
    /// entry before it or is one whose layout can be learned.
    #[inline(always)]
    fn shaped(&mut self) -> Option<Event<'a>> {
        let (len, record_at) = self.shape.entry(self.buf, 0)?;
        let raw = self.buf.get(..len)?;
        let (time_raw, rec) = raw.get(1..)?.split_at_checked(record_at.checked_sub(1)?)?;
        // A layout's time is valid whatever its value, so this is Some; if it were not,
        // the entry is left to read_entry.
        let time = EventTime::from_msgpack(time_raw)?;
        self.buf = &self.buf[len..];
        Some(Event { time, time_raw, record: RecordRef { raw: rec }, raw })
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Event<'a>;

    #[inline]
    fn next(&mut self) -> Option<Event<'a>> {
        loop {
            if self.buf.is_empty() {
                return None;
            }
            if self.format == EntriesFormat::Packed {
                if let Some(ev) = self.shaped() {
                    return Some(ev);
                }
            }
            match read_entry(self.buf, self.format, MAX_DEPTH) {
                Ok((check, used)) => {
                    self.buf = &self.buf[used..];
                    if self.format == EntriesFormat::Message {
                        self.buf = &[];
                    }
                    if let EntryCheck::Valid(ev) = check {
                        return Some(ev);
                    }
                }
                Err(_) => {
                    self.buf = &[];
                    return None;
                }
            }
        }
    }
}

/// A msgpack map (an event record) read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    raw: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// Wraps the encoding of a map. Returns `None` if `raw` is not exactly one complete,
    /// well-formed map within the nesting limit.
    pub fn new(raw: &'a [u8]) -> Option<Self> {
        match msgpack::head(raw) {
            Ok(Some(Head::Map { .. })) => {}
            _ => return None,
        }
        (msgpack::value_len(raw, MAX_DEPTH).ok()? == raw.len()).then_some(RecordRef { raw })
    }

    /// The encoded map, exactly as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Number of key/value pairs.
    pub fn len(&self) -> usize {
        match msgpack::head(self.raw) {
            Ok(Some(Head::Map { n, .. })) => n as usize,
            _ => 0,
        }
    }

    /// True for a map without pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates `(key, value)` pairs in wire order.
    pub fn fields(&self) -> Fields<'a> {
        match msgpack::head(self.raw) {
            Ok(Some(Head::Map { hdr, n })) => Fields { buf: &self.raw[hdr..], left: n },
            _ => Fields { buf: &[], left: 0 },
        }
    }

    /// Looks up a string key. With duplicate keys the last one wins, as when fluentd
    /// decodes the map into a Ruby Hash.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<ValueRef<'a>> {
        let raw = self.raw;
        let (mut pos, n) = match raw.first() {
            Some(&m @ 0x80..=0x8f) => (1, (m & 0x0f) as u32),
            _ => match msgpack::head(raw) {
                Ok(Some(Head::Map { hdr, n })) => (hdr, n),
                _ => return None,
            },
        };
        let mut found = None;
        for _ in 0..n {
            let kend = msgpack::scalar_end_fast(raw, pos).or_else(|| msgpack::skip_from(raw, pos))?;
            let k = &raw[pos..kend];
            let hit = match k[0] {
                m @ 0xa0..=0xbf => (m & 0x1f) as usize == key.len() && &k[1..] == key,
                _ => msgpack::read_bytes(k) == Some(key),
            };
            let vend = msgpack::scalar_end_fast(raw, kend).or_else(|| msgpack::skip_from(raw, kend))?;
            if hit {
                found = Some(ValueRef { raw: &raw[kend..vend] });
            }
            pos = vend;
        }
        found
    }

    /// Renders the record as JSON (Ruby `JSON.generate`-compatible for common values).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        ValueRef { raw: self.raw }.write_json(out)
    }
}

/// Iterator over a map's fields.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (ValueRef<'a>, ValueRef<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let kl = msgpack::skip_from(self.buf, 0)?;
        let (k, rest) = self.buf.split_at(kl);
        let vl = msgpack::skip_from(rest, 0)?;
        let (v, rest) = rest.split_at(vl);
        self.buf = rest;
        Some((ValueRef { raw: k }, ValueRef { raw: v }))
    }
}

/// One msgpack value read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueRef<'a> {
    raw: &'a [u8],
}

impl<'a> ValueRef<'a> {
    /// Wraps one complete, well-formed value.
    pub fn new(raw: &'a [u8]) -> Option<Self> {
        (msgpack::value_len(raw, MAX_DEPTH).ok()? == raw.len()).then_some(ValueRef { raw })
    }
    /// The value's whole encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
    /// The value's msgpack kind.
    pub fn kind(&self) -> Kind {
        msgpack::head(self.raw).ok().flatten().map(|h| h.kind()).unwrap_or(Kind::Nil)
    }
    /// String (or binary) payload.
    #[inline]
    pub fn as_str(&self) -> Option<&'a [u8]> {
        msgpack::read_bytes(self.raw)
    }
    /// An integer that fits an i64.
    pub fn as_i64(&self) -> Option<i64> {
        msgpack::read_int(self.raw).and_then(|i| i64::try_from(i).ok())
    }
    /// A float32 or float64 (integers are not converted).
    pub fn as_f64(&self) -> Option<f64> {
        msgpack::read_float(self.raw)
    }
    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self.raw.first() {
            Some(0xc2) => Some(false),
            Some(0xc3) => Some(true),
            _ => None,
        }
    }
    /// True for `nil`.
    pub fn is_nil(&self) -> bool {
        self.raw.first() == Some(&0xc0)
    }
    /// A map value, as a record.
    pub fn as_map(&self) -> Option<RecordRef<'a>> {
        matches!(self.kind(), Kind::Map).then_some(RecordRef { raw: self.raw })
    }
    /// Elements of an array value.
    pub fn as_array(&self) -> Option<ArrayIter<'a>> {
        match msgpack::head(self.raw) {
            Ok(Some(Head::Array { hdr, n })) => Some(ArrayIter { buf: &self.raw[hdr..], left: n }),
            _ => None,
        }
    }

    /// Text of the value as Ruby's `to_s` would give it for scalars (strings as is,
    /// numbers in decimal, nil as empty, booleans as true/false); containers as JSON.
    /// Used by filters that match patterns against field values.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        if let Some(s) = self.as_str() {
            out.extend_from_slice(s);
        } else if self.is_nil() {
        } else {
            self.write_json(out)
        }
    }

    /// Renders the value as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_json(self.raw, out, 0);
    }
}

/// Iterator over array elements.
#[derive(Debug, Clone)]
pub struct ArrayIter<'a> {
    buf: &'a [u8],
    left: u32,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = ValueRef<'a>;
    fn next(&mut self) -> Option<ValueRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let n = msgpack::skip_from(self.buf, 0)?;
        let (v, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(ValueRef { raw: v })
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes a JSON string literal: escapes `"`, `\` and control characters; valid UTF-8
/// passes through; invalid UTF-8 bytes become U+FFFD.
///
/// Runs of plain ASCII are found eight bytes at a time and copied whole; only a
/// non-ASCII run is checked as UTF-8 (perf put a byte-at-a-time escape loop plus a
/// whole-string `from_utf8` at 40% of out_elasticsearch's cycles).
pub fn write_json_str(s: &[u8], out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut i = 0;
    while i < s.len() {
        let n = plain_run(&s[i..]);
        out.extend_from_slice(&s[i..i + n]);
        i += n;
        let Some(&b) = s.get(i) else { break };
        if b < 0x80 {
            escape_byte(b, out);
            i += 1;
            continue;
        }
        // A run of bytes >= 0x80: UTF-8 sequences never contain an ASCII byte, so the
        // run is validated on its own (as `from_utf8` over the whole string would).
        let end = i + s[i..].iter().position(|&c| c < 0x80).unwrap_or(s.len() - i);
        let mut rest = &s[i..end];
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    out.extend_from_slice(valid.as_bytes());
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.extend_from_slice(good);
                    out.extend_from_slice("\u{fffd}".as_bytes());
                    let skip = e.error_len().unwrap_or(bad.len());
                    rest = &bad[skip..];
                }
            }
        }
        i = end;
    }
    out.push(b'"');
}

/// Length of the prefix of `s` that a JSON string carries as is: ASCII other than
/// control characters, `"` and `\`.
#[inline]
fn plain_run(s: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(w) = s.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let w = u64::from_le_bytes(a);
        let q = w ^ (LO * b'"' as u64);
        let b = w ^ (LO * b'\\' as u64);
        // Each test flags its lowest matching byte exactly (a borrow only flags bytes
        // above a true one), and bytes >= 0x80 by their own high bit.
        let m = ((q.wrapping_sub(LO) & !q) | (b.wrapping_sub(LO) & !b) | (w.wrapping_sub(LO * 0x20) & !w) | w) & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = s.get(i) {
        if !(0x20..0x80).contains(&c) || c == b'"' || c == b'\\' {
            break;
        }
        i += 1;
    }
    i
}

/// Escapes one ASCII byte that [`plain_run`] stopped at.
#[inline]
fn escape_byte(b: u8, out: &mut Vec<u8>) {
    let esc: &[u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
            return;
        }
    };
    out.extend_from_slice(esc);
}

/// Writes a float as Ruby's `Float#to_s` (what `JSON.generate` uses): the shortest
/// digits that round-trip; fixed notation with at least one decimal (`2.0`, `0.0001`,
/// `123456789012345.0`) for magnitudes from 1e-4 below 1e15 (and 1e15..1e16 when there
/// are fractional digits), otherwise `1.0e+15`, `2.5e-05`. Non-finite
/// values (which JSON cannot carry) become `null`.
fn write_float(f: f64, out: &mut Vec<u8>) {
    use std::io::Write;
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-5", "1e16", "0e0".
    let start = out.len();
    let _ = write!(out, "{f:e}");
    let mut digits = [0u8; 24];
    let (mut nd, mut exp, mut neg) = (0usize, 0i32, false);
    let mut in_exp = false;
    let mut exp_neg = false;
    for &b in &out[start..] {
        match b {
            b'-' if !in_exp => neg = true,
            b'-' => exp_neg = true,
            b'e' => in_exp = true,
            b'0'..=b'9' if in_exp => exp = exp * 10 + (b - b'0') as i32,
            b'0'..=b'9' if nd < digits.len() => {
                digits[nd] = b;
                nd += 1;
            }
            _ => {}
        }
    }
    out.truncate(start);
    let digits = &digits[..nd.max(1)];
    // Position of the decimal point relative to the digits (0.d1d2... x 10^decpt).
    let decpt = if exp_neg { -exp } else { exp } + 1;
    if neg {
        out.push(b'-');
    }
    let nd = digits.len();
    if decpt > 0 && decpt <= 16 && (decpt as usize) < nd {
        let int_len = decpt as usize;
        out.extend_from_slice(&digits[..int_len]);
        out.push(b'.');
        out.extend_from_slice(&digits[int_len..]);
    } else if decpt > 0 && decpt <= 15 {
        out.extend_from_slice(digits);
        out.resize(out.len() + decpt as usize - nd, b'0');
        out.extend_from_slice(b".0");
    } else if decpt <= 0 && decpt > -4 {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (-decpt) as usize, b'0');
        out.extend_from_slice(digits);
    } else {
        out.push(digits[0]);
        out.push(b'.');
        if digits.len() > 1 {
            out.extend_from_slice(&digits[1..]);
        } else {
            out.push(b'0');
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.unsigned_abs());
    }
}

/// Decimal integer, without allocating (digits by hand: `write!` of an i128 went
/// through the formatter and 128-bit division, 3% of out_elasticsearch's cycles).
fn write_int(i: i128, out: &mut Vec<u8>) {
    if i < 0 {
        out.push(b'-');
    }
    let mut n = i.unsigned_abs();
    let mut d = [0u8; 40];
    let mut p = d.len();
    // Up to u64::MAX in 64-bit arithmetic, which the compiler turns into multiplies.
    let mut small = match u64::try_from(n) {
        Ok(v) => v,
        Err(_) => {
            while n > u64::MAX as u128 {
                p -= 1;
                d[p] = b'0' + (n % 10) as u8;
                n /= 10;
            }
            n as u64
        }
    };
    // Two digits per division, from a table (as itoa does).
    while small >= 100 {
        let r = (small % 100) as usize * 2;
        small /= 100;
        p -= 2;
        d[p..p + 2].copy_from_slice(&PAIRS[r..r + 2]);
    }
    if small >= 10 {
        let r = small as usize * 2;
        p -= 2;
        d[p..p + 2].copy_from_slice(&PAIRS[r..r + 2]);
    } else {
        p -= 1;
        d[p] = b'0' + small as u8;
    }
    out.extend_from_slice(&d[p..]);
}

/// "00" to "99".
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

fn write_json(v: &[u8], out: &mut Vec<u8>, depth: usize) {
    write_json_in(v, out, depth, false)
}

/// `in_key`: rendering the text of a non-string map key, which is escaped once as a
/// whole by the caller; keys nested inside it are written inline, not escaped again
/// (escaping at every level would double the size per level: 40 nested map keys in a
/// 125-byte record would need a terabyte).
fn write_json_in(v: &[u8], out: &mut Vec<u8>, depth: usize, in_key: bool) {
    let Ok(Some(h)) = msgpack::head(v) else {
        out.extend_from_slice(b"null");
        return;
    };
    match h {
        Head::Map { hdr, n } => {
            if depth >= MAX_DEPTH {
                out.extend_from_slice(b"null");
                return;
            }
            out.push(b'{');
            let f = Fields { buf: &v[hdr..], left: n };
            let mut first = true;
            for (k, val) in f {
                if !first {
                    out.push(b',');
                }
                first = false;
                match k.as_str() {
                    Some(s) => write_json_str(s, out),
                    None if in_key => write_json_in(k.raw, out, depth + 1, true),
                    None => {
                        // JSON keys must be strings: render the key's JSON as a string.
                        let mut tmp = Vec::new();
                        write_json_in(k.raw, &mut tmp, depth + 1, true);
                        write_json_str(&tmp, out);
                    }
                }
                out.push(b':');
                write_json_in(val.raw, out, depth + 1, in_key);
            }
            out.push(b'}');
        }
        Head::Array { hdr, n } => {
            if depth >= MAX_DEPTH {
                out.extend_from_slice(b"null");
                return;
            }
            out.push(b'[');
            let it = ArrayIter { buf: &v[hdr..], left: n };
            for (i, e) in it.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_in(e.raw, out, depth + 1, in_key);
            }
            out.push(b']');
        }
        Head::Scalar { kind, .. } => match kind {
            Kind::Nil => out.extend_from_slice(b"null"),
            Kind::Bool => out.extend_from_slice(if v[0] == 0xc3 { b"true" } else { b"false" }),
            Kind::UInt | Kind::NegInt => match msgpack::read_int(v) {
                Some(i) => write_int(i, out),
                None => out.extend_from_slice(b"null"),
            },
            Kind::F32 | Kind::F64 => write_float(msgpack::read_float(v).unwrap_or(f64::NAN), out),
            Kind::Str | Kind::Bin => write_json_str(msgpack::read_bytes(v).unwrap_or(b""), out),
            Kind::Ext => match EventTime::from_msgpack(v) {
                // Fluent::EventTime#to_json is its integer seconds.
                Some(t) => write_int(t.sec as i128, out),
                None => out.extend_from_slice(b"null"),
            },
            Kind::Array | Kind::Map => out.extend_from_slice(b"null"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_map_keys_render_in_linear_size() {
        // Found by the frame_decoder fuzz target: maps used as keys of maps, 40 deep.
        let mut v = vec![0x81u8; 40];
        v.extend_from_slice(&[0xa1, b'k', 0xa1, b'v']);
        v.extend(std::iter::repeat_n(0x01u8, 40));
        let mut out = Vec::new();
        ValueRef { raw: &v }.write_json(&mut out);
        assert!(out.len() < 1000, "{} bytes", out.len());
        // One level: the key's JSON as an escaped string, as before.
        let one = [0x81, 0x81, 0xa1, b'k', 0x01, 0x02];
        let mut out = Vec::new();
        ValueRef { raw: &one }.write_json(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"{\"k\":1}":2}"#);
    }

    fn rec() -> Vec<u8> {
        // {"a": 1, "msg": "hi\n", "n": {"x": [true, nil, -3, 1.5]}}
        let mut v = vec![
            0x83, 0xa1, b'a', 0x01, 0xa3, b'm', b's', b'g', 0xa3, b'h', b'i', b'\n', 0xa1, b'n', 0x81, 0xa1, b'x',
            0x94, 0xc3, 0xc0, 0xfd, 0xcb,
        ];
        v.extend_from_slice(&1.5f64.to_be_bytes());
        v
    }

    #[test]
    fn record_get_and_json() {
        let r = rec();
        let rr = RecordRef::new(&r).unwrap();
        assert_eq!(rr.len(), 3);
        assert_eq!(rr.get(b"a").unwrap().as_i64(), Some(1));
        assert_eq!(rr.get(b"msg").unwrap().as_str(), Some(&b"hi\n"[..]));
        assert!(rr.get(b"zz").is_none());
        let mut out = Vec::new();
        rr.write_json(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":1,"msg":"hi\n","n":{"x":[true,null,-3,1.5]}}"#);
    }

    #[test]
    fn record_new_rejects_non_maps_and_trailing() {
        assert!(RecordRef::new(&[0x90]).is_none());
        assert!(RecordRef::new(&[0x80, 0x00]).is_none());
        assert!(RecordRef::new(&[0x81, 0xa1]).is_none());
    }

    #[test]
    fn json_strings_escape_and_repair_utf8() {
        let mut out = Vec::new();
        write_json_str(b"a\"b\\c\x01\xff\xc3\xa9", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\u0001\u{fffd}é\"");
    }

    /// The byte-at-a-time escape with a whole-string UTF-8 check that write_json_str
    /// replaced: the oracle for its output.
    fn json_str_reference(s: &[u8], out: &mut Vec<u8>) {
        fn esc(s: &[u8], out: &mut Vec<u8>) {
            for &b in s {
                if b < 0x20 || b == b'"' || b == b'\\' {
                    escape_byte(b, out);
                } else {
                    out.push(b);
                }
            }
        }
        out.push(b'"');
        let mut rest = s;
        loop {
            match std::str::from_utf8(rest) {
                Ok(v) => {
                    esc(v.as_bytes(), out);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    esc(good, out);
                    out.extend_from_slice("\u{fffd}".as_bytes());
                    rest = &bad[e.error_len().unwrap_or(bad.len())..];
                }
            }
        }
        out.push(b'"');
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 4096, ..Default::default() })]
        /// Any bytes: ASCII runs of every length around the 8-byte words, escapes,
        /// valid and broken UTF-8 (truncated sequences before ASCII and at the end).
        #[test]
        fn json_strings_match_the_reference(s in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::any::<u8>(),
                proptest::sample::select(vec![b'a', b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f]),
            ], 0..64)) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write_json_str(&s, &mut a);
            json_str_reference(&s, &mut b);
            proptest::prop_assert_eq!(a, b);
        }

        #[test]
        fn ints_match_the_formatter(i in proptest::prelude::any::<i128>(), j in proptest::prelude::any::<i64>()) {
            for v in [i, j as i128, i128::MIN, i128::MAX, 0, -1, u64::MAX as i128, u64::MAX as i128 + 1] {
                let mut out = Vec::new();
                write_int(v, &mut out);
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
            }
        }
    }

    fn float_json(f: f64) -> String {
        let mut out = Vec::new();
        write_float(f, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_render_as_ruby_does() {
        // Expected strings from Ruby 3 `Float#to_s` (what JSON.generate prints).
        for (f, ruby) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (2.0, "2.0"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e-4, "0.0001"),
            (1.5e-4, "0.00015"),
            (1e-5, "1.0e-05"),
            (2.5e-7, "2.5e-07"),
            (123456789012345.0, "123456789012345.0"),
            (999999999999999.9, "999999999999999.9"),
            (1e15, "1.0e+15"),
            (1.25e15, "1.25e+15"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (1234567890123456.5, "1234567890123456.5"),
            (1e16, "1.0e+16"),
            (1.0000000000000002e16, "1.0000000000000002e+16"),
            (1e300, "1.0e+300"),
            (-1e-300, "-1.0e-300"),
            (5e-324, "5.0e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
        ] {
            assert_eq!(float_json(f), ruby, "{f:e}");
        }
    }

    #[test]
    fn json_escapes_controls_but_not_del() {
        let mut out = Vec::new();
        write_json_str(b"\x08\x0c\x1f\x7f/", &mut out);
        assert_eq!(out, b"\"\\b\\f\\u001f\x7f/\"");
    }

    #[test]
    fn times() {
        let et = [0xd7, 0x00, 0, 0, 0, 10, 0, 0, 0, 20];
        assert_eq!(EventTime::from_msgpack(&et), Some(EventTime::new(10, 20)));
        let ext8 = [0xc7, 8, 0x00, 0, 0, 0, 10, 0, 0, 0, 20];
        assert_eq!(EventTime::from_msgpack(&ext8), Some(EventTime::new(10, 20)));
        assert_eq!(EventTime::from_msgpack(&[0xce, 0, 0, 1, 0]), Some(EventTime::new(256, 0)));
        assert_eq!(EventTime::from_msgpack(&[0xff]), None);
        let mut f = vec![0xcb];
        f.extend_from_slice(&1.25f64.to_be_bytes());
        assert_eq!(EventTime::from_msgpack(&f), Some(EventTime::new(1, 250_000_000)));
        let mut arr = vec![0x92];
        arr.extend_from_slice(&et);
        arr.push(0x80);
        assert_eq!(EventTime::from_msgpack(&arr), Some(EventTime::new(10, 20)));
        assert_eq!(EventTime::from_msgpack(&[0xd7, 0x01, 0, 0, 0, 10, 0, 0, 0, 20]), None);
    }
}
