//! What every parser shares (fluentd's `Parser` base class): the common parameters
//! (`time_key`, `keep_time_key`, `estimate_current_event`, `null_value_pattern`,
//! `null_empty_string`, `types`) and the record writer that applies them field by
//! field while the record is written as msgpack into the caller's buffer.
//!
//! fluentd builds a Hash, takes the time key out (`parse_time`), then converts values
//! (`convert_values`: null-like strings to nil, then the `types` converters). spate
//! does the same per field as it writes: a field is looked up once by key ([`Role`];
//! parsers with fixed field names look roles up at config time), so a record costs no
//! Hash and no String. Keys that may repeat (JSON, LTSV, msgpack) are deduplicated as
//! a Ruby Hash does it: the first position, the last value.

use std::sync::Arc;

use spate_protocol::encode::raw;
use spate_protocol::msgpack::Kind;
use spate_protocol::{EventTime, ValueRef};

use super::time::{ruby_to_i, TimeConf, TimeError, TimeParser, Zone};
use crate::ruby::regex::RubyRegex;
use crate::ruby::value::write_to_s;

/// A `types` converter (fluentd's `build_type_converters`).
#[derive(Debug, Clone)]
pub enum Conv {
    String,
    Integer,
    Float,
    Bool,
    /// `time`, `time:FORMAT`, `time:unixtime`, `time:+09:00:FORMAT`
    Time(TimeConf),
    /// `array` (`,`) or `array:DELIM`
    Array(Box<[u8]>),
}

impl Conv {
    /// One `types` entry's value (`integer`, `time:%d/%b/%Y`, `array:|`). `zone` is the
    /// section's zone, used by `time` values that name no timezone.
    pub fn parse(def: &str, zone: Zone) -> Result<Conv, String> {
        let (ty, opt) = match def.split_once(':') {
            Some((t, o)) => (t, Some(o)),
            None => (def, None),
        };
        Ok(match ty {
            "string" => Conv::String,
            "integer" => Conv::Integer,
            "float" => Conv::Float,
            "bool" => Conv::Bool,
            "array" => Conv::Array(opt.unwrap_or(",").as_bytes().into()),
            "time" => {
                let Some(opt) = opt else {
                    return TimeConf::new(&super::time::TimeSettings::default()).map(Conv::Time);
                };
                // time:[timezone:]format; a format of unixtime/float is a time_type.
                let (tz, fmt) = match opt.split_once(':') {
                    Some((tz, f)) if super::time::parse_timezone(tz).is_ok() => (Some(tz), f),
                    _ => (None, opt),
                };
                let settings = match fmt {
                    "unixtime" | "float" => {
                        super::time::TimeSettings { time_type: Some(fmt), timezone: tz, ..Default::default() }
                    }
                    f => super::time::TimeSettings { time_format: Some(f), timezone: tz, ..Default::default() },
                };
                let mut conf = TimeConf::new(&settings)?;
                if tz.is_none() && !matches!(fmt, "unixtime" | "float") {
                    conf = TimeConf::with_format(fmt, zone)?;
                }
                Conv::Time(conf)
            }
            other => {
                return Err(format!(
                    "unknown value conversion type:'{other}' (supported: string, integer, float, bool, time, array)"
                ))
            }
        })
    }
}

/// The common `<parse>` parameters, compiled (shared read-only by every shard).
#[derive(Debug, Clone)]
pub struct Common {
    pub time_key: Option<Box<[u8]>>,
    pub keep_time_key: bool,
    pub estimate_current_event: bool,
    pub(crate) null_pattern: Option<Arc<RubyRegex>>,
    pub null_empty_string: bool,
    pub types: Vec<(Box<[u8]>, Conv)>,
    pub time: TimeConf,
}

/// What one field is, by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Role {
    pub is_time: bool,
    /// Index into `types`.
    pub conv: Option<u16>,
}

impl Common {
    /// The role of a key (linear: `types` is short).
    #[inline]
    pub fn role(&self, key: &[u8]) -> Role {
        Role {
            is_time: self.time_key.as_deref() == Some(key),
            conv: self.types.iter().position(|(k, _)| &**k == key).map(|i| i as u16),
        }
    }

    /// No common parameter applies to a field `key`: its value is written as it is.
    #[inline]
    pub fn plain(&self, key: &[u8]) -> bool {
        // The time key compared without a call to memcmp when it is short (the usual
        // `time`): this runs for every field of every JSON record.
        !self.converts()
            && !self.time_key.as_deref().is_some_and(|t| short_eq(t, key))
            && (self.types.is_empty() || self.role(key).conv.is_none())
    }

    fn converts(&self) -> bool {
        self.null_pattern.is_some() || self.null_empty_string
    }
}

/// Per-shard state of the common part: time parsers with their caches, scratch.
#[derive(Debug)]
pub struct Ctx {
    pub common: Common,
    pub time: TimeParser,
    /// One time parser per `types` entry (None for other converters).
    conv_time: Vec<Option<TimeParser>>,
    scratch: Vec<u8>,
    regex_scratch: Vec<u8>,
    /// The current time, read once per text (see [`estimate`]).
    now: std::cell::Cell<Option<EventTime>>,
}

impl Ctx {
    pub fn new(common: Common) -> Ctx {
        let time = TimeParser::new(common.time.clone());
        let conv_time = common
            .types
            .iter()
            .map(|(_, c)| match c {
                Conv::Time(tc) => Some(TimeParser::new(tc.clone())),
                _ => None,
            })
            .collect();
        Ctx { common, time, conv_time, scratch: Vec::new(), regex_scratch: Vec::new(), now: Default::default() }
    }

    /// Starts a text: the records of one text that take the current time share one
    /// clock read (a JSON array of 1,000 records read it 1,000 times in fluentd; the
    /// reads are microseconds apart, and a clock read costs as much as a small field).
    #[inline]
    pub fn new_text(&mut self) {
        self.now.set(None);
    }

    /// fluentd's `string_like_null`.
    #[inline]
    fn null_like(&mut self, s: &[u8]) -> bool {
        (self.common.null_empty_string && s.is_empty())
            || self.common.null_pattern.as_ref().is_some_and(|re| re.is_match(s, &mut self.regex_scratch))
    }
}

/// Writes one record (a msgpack map) into `out`, applying the common parameters.
pub struct Rec<'o> {
    pub out: &'o mut Vec<u8>,
    hdr: usize,
    n: u32,
    /// The parsed time of the time key (the last one wins, as in a Hash).
    time: Option<Result<EventTime, TimeError>>,
    /// For records whose keys may repeat.
    dedup: Option<&'o mut Dedup>,
}

/// One field of a record whose keys may repeat.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Key start, value start, value end in `out`.
    ks: usize,
    vs: usize,
    ve: usize,
    /// The value of a later field with the same key.
    latest: Option<(usize, usize)>,
    /// A non-string key (never compared).
    raw: bool,
}

/// Duplicate-key bookkeeping, reused across records. Up to 16 fields, a record keeps
/// only its keys' 64-bit hashes: most records repeat no key, so a field costs a hash
/// and a scan of a few words. A repeated hash (or a 17th field) lists the fields
/// written so far (walking the record once), and from then on keys are looked up for
/// real: a linear scan for small records, a keyed hash index (so crafted
/// keys cannot make it quadratic) from 16 fields on. A repeated key's value is
/// remembered and the record rewritten once at the end.
#[derive(Debug, Default)]
pub struct Dedup {
    /// The hashes of the keys so far (while not `listed`).
    hashes: [u64; HASHED],
    /// `entries` lists the record's fields.
    listed: bool,
    entries: Vec<Entry>,
    index: std::collections::HashMap<u64, u32>,
    hasher: std::collections::hash_map::RandomState,
    scratch: Vec<u8>,
    dups: bool,
}

const INDEX_FROM: usize = 16;

/// A 64-bit hash of a key (past 8 bytes FxHash-like: a rotate, xor and multiply per
/// word; up to 8, the bytes themselves: the first and last four, or for 1-3 bytes
/// three of them and the length). Two
/// keys of one record with the same hash are listed and compared for real, so a
/// collision costs time, never a wrong record.
///
/// It reads the key where the parser found it, not the copy just written into the
/// record: loading a word over bytes stored a moment ago by separate narrower stores
/// stalls the CPU (no store forwarding), which cost more than the rest of the lookup.
/// Every byte is covered by whole overlapping loads (no copy, no mask): words of 8
/// and the last 8; the first and last 4; the first, middle and last byte.
#[inline]
pub(crate) fn key_hash(k: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let n = k.len();
    let w8 = |i: usize| k.get(i..i + 8).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
    let w4 = |i: usize| load4(k, i) as u64;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    // Up to 8 bytes, the key's bytes are their own hash (the hash is only compared
    // with the other keys' of the record, never used as an index): no multiply.
    // Keys of one length cannot collide; keys of different lengths rarely do, and a
    // collision only costs the listing.
    if n <= 8 {
        return if n >= 4 {
            w4(0) << 32 | w4(n - 4)
        } else if n > 0 {
            (n as u64) << 24 | (k[0] as u64) << 16 | (k[n / 2] as u64) << 8 | k[n - 1] as u64
        } else {
            1 << 63
        };
    }
    let mut h = mix(0, n as u64);
    let mut i = 0;
    while i + 8 < n {
        h = mix(h, w8(i));
        i += 8;
    }
    mix(h, w8(n - 8))
}

/// The 4 bytes of `k` at `i` as a little-endian word (0 past the end).
#[inline(always)]
fn load4(k: &[u8], i: usize) -> u32 {
    k.get(i..i + 4).map_or(0, |w| u32::from_le_bytes(w.try_into().unwrap_or_default()))
}

#[inline(always)]
fn load8(k: &[u8], i: usize) -> u64 {
    k.get(i..i + 8).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
}

/// `a == b`, with keys of 4 to 16 bytes compared as two overlapping words of 4 or 8
/// bytes rather than through a call to memcmp.
#[inline(always)]
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        4..=7 => load4(a, 0) == load4(b, 0) && load4(a, n - 4) == load4(b, n - 4),
        8..=16 => load8(a, 0) == load8(b, 0) && load8(a, n - 8) == load8(b, n - 8),
        _ => a == b,
    }
}

/// Appends `text[from..to]` as a msgpack string. A short string whose text is followed
/// by enough bytes is copied as one fixed 32-byte block and the length set after: two
/// vector moves instead of a capacity check per part and a call to memcpy, which were
/// most of what a short key or value cost (callgrind, S8's records). A string of 32 to
/// 128 bytes is copied as two or four overlapping 32-byte blocks; longer ones by
/// memcpy.
#[inline(always)]
pub(crate) fn put_str(out: &mut Vec<u8>, text: &[u8], from: usize, to: usize) {
    const BLOCK: usize = 32;
    let len = to.saturating_sub(from);
    if len < 32 && from < to && text.len() >= BLOCK && from <= text.len() - BLOCK {
        out.reserve(1 + BLOCK);
        let n = out.len();
        // SAFETY: `from + BLOCK <= text.len()`, so the read stays inside `text`; the
        // reserve above makes room for the header and BLOCK bytes after `n`; only the
        // header and the `len` (< BLOCK) bytes that belong to the string are counted
        // as initialised by set_len (the rest is spare capacity, overwritten later).
        unsafe {
            let dst = out.as_mut_ptr().add(n);
            *dst = 0xa0 | len as u8;
            std::ptr::copy_nonoverlapping(text.as_ptr().add(from), dst.add(1), BLOCK);
            out.set_len(n + 1 + len);
        }
    } else if (32..=128).contains(&len) && to <= text.len() {
        // A message-sized string (str8) as two or four 32-byte blocks, the last ones
        // overlapping the first so that they end at the string's end: no read past
        // it. Not a loop (LLVM turned one back into a call to memcpy), whose size
        // dispatch for an 80-byte message was about 6% of S8's cycles (perf).
        out.reserve(2 + len);
        let n = out.len();
        // SAFETY: `from + 32 <= to <= text.len()` and `len <= 128`, so every block read
        // lies inside `text[from..to]`; the reserve makes room for the header and `len`
        // bytes after `n`, and every block written lies inside them; set_len counts
        // exactly what was written.
        unsafe {
            let dst = out.as_mut_ptr().add(n);
            *dst = 0xd9;
            *dst.add(1) = len as u8;
            let (src, d) = (text.as_ptr().add(from), dst.add(2));
            let block = |at: usize| std::ptr::copy_nonoverlapping(src.add(at), d.add(at), BLOCK);
            block(0);
            if len > 64 {
                block(32);
                block(len - 64);
            }
            block(len - 32);
            out.set_len(n + 2 + len);
        }
    } else {
        raw::str(out, text.get(from..to).unwrap_or_default());
    }
}

/// A field's key as written: where it starts and ends in the record, and its hash.
#[derive(Clone, Copy)]
pub(crate) struct Key {
    at: usize,
    vs: usize,
    hash: u64,
}

/// Fields whose key hashes are kept before a record is listed.
const HASHED: usize = 16;

impl Dedup {
    /// Lists the fields of the record body `out[body..end]` (written by [`Rec`], so it
    /// walks; a value that does not would end the list early, never panic).
    fn list(&mut self, out: &[u8], body: usize, end: usize) {
        self.listed = true;
        let mut at = body;
        while at < end {
            let Some(field) = out.get(at..end) else { break };
            let (Ok(kl), Some(kind)) = (spate_protocol::msgpack::value_len(field, 256), field.first()) else { break };
            let Ok(vl) = spate_protocol::msgpack::value_len(&field[kl..], 256) else { break };
            let raw = !matches!(kind, 0xa0..=0xbf | 0xd9..=0xdb);
            let e = Entry { ks: at, vs: at + kl, ve: at + kl + vl, latest: None, raw };
            self.push(out, e);
            at += kl + vl;
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn find(&mut self, out: &[u8], key: &[u8]) -> Option<usize> {
        let same = |e: &Entry| !e.raw && &out[e.ks..e.vs] == key;
        if self.entries.len() < INDEX_FROM {
            return self.entries.iter().position(same);
        }
        if self.index.is_empty() {
            for i in 0..self.entries.len() {
                let e = self.entries[i];
                if !e.raw {
                    let h = self.hash(&out[e.ks..e.vs]);
                    self.index.entry(h).or_insert(i as u32);
                }
            }
        }
        match self.index.get(&self.hash(key)) {
            None => None,
            Some(&i) if self.entries.get(i as usize).is_some_and(same) => Some(i as usize),
            // A hash collision (random keys make it rare): scan.
            Some(_) => self.entries.iter().position(same),
        }
    }

    fn push(&mut self, out: &[u8], e: Entry) {
        if !self.index.is_empty() && !e.raw {
            let h = self.hash(&out[e.ks..e.vs]);
            self.index.entry(h).or_insert(self.entries.len() as u32);
        }
        self.entries.push(e);
    }

    /// [`Rec::end_field`] once the record's fields are listed (or must be now: a
    /// repeated hash or a 17th field). `body`: where the record's fields start in
    /// `out`. True if the field is new (a repeated key only takes the last value).
    #[inline(never)]
    fn add_listed(&mut self, out: &[u8], body: usize, key: Key) -> bool {
        let Key { at, vs, .. } = key;
        let ve = out.len();
        if !self.listed {
            self.list(out, body, at);
        }
        match self.find(out, &out[at..vs]) {
            None => {
                self.push(out, Entry { ks: at, vs, ve, latest: None, raw: false });
                true
            }
            Some(i) => {
                // A Ruby Hash keeps the first position and takes the last value.
                self.entries[i].latest = Some((vs, ve));
                self.dups = true;
                false
            }
        }
    }

    /// Rewrites the record body after `body` with each key once, at its first position,
    /// with its last value.
    fn rewrite(&mut self, out: &mut Vec<u8>, body: usize) {
        self.scratch.clear();
        for e in &self.entries {
            self.scratch.extend_from_slice(&out[e.ks..e.vs]);
            let (a, b) = e.latest.unwrap_or((e.vs, e.ve));
            self.scratch.extend_from_slice(&out[a..b]);
        }
        out.truncate(body);
        out.extend_from_slice(&self.scratch);
    }
}

impl<'o> Rec<'o> {
    /// Starts a map at the end of `out` (a one-byte header, widened in `finish` when
    /// the record has 16 fields or more).
    pub fn begin(out: &'o mut Vec<u8>, mut dedup: Option<&'o mut Dedup>) -> Rec<'o> {
        let hdr = out.len();
        out.push(0x80);
        if let Some(d) = dedup.as_deref_mut() {
            if d.listed {
                d.entries.clear();
                d.index.clear();
                d.listed = false;
            }
            d.dups = false;
        }
        Rec { out, hdr, n: 0, time: None, dedup }
    }

    /// Starts field `key` (its value must follow; the caller appends one msgpack value
    /// to `out` and calls [`Rec::end_field`], or drops the record). With deduplication,
    /// a repeated key is remembered so `end_field` can move its value to the first
    /// position. Callers outside this module use it for keys [`Common::plain`] says
    /// nothing applies to.
    #[inline]
    pub(crate) fn key(&mut self, key: &[u8]) -> Key {
        self.key_in(key, 0, key.len())
    }

    /// [`Rec::key`] for a key that is `text[from..to]` (no escapes), written with
    /// [`put_str`].
    #[inline(always)]
    pub(crate) fn key_in(&mut self, text: &[u8], from: usize, to: usize) -> Key {
        let hash = if self.dedup.as_ref().is_some_and(|d| !d.listed) { key_hash(&text[from..to]) } else { 0 };
        self.key_hashed(text, from, to, hash)
    }

    /// [`Rec::key_in`] for a key whose [`key_hash`] the caller has (json_direct's memo
    /// of the keys of the record before).
    #[inline(always)]
    pub(crate) fn key_hashed(&mut self, text: &[u8], from: usize, to: usize, hash: u64) -> Key {
        let at = self.out.len();
        put_str(self.out, text, from, to);
        Key { at, vs: self.out.len(), hash }
    }

    /// Ends the field of key `key` (its value written after it). The usual case (no
    /// dedup, or a new hash among the first 16 fields) is inlined; the rest is not.
    #[inline(always)]
    pub(crate) fn end_field(&mut self, key: Key) {
        self.end_field_as(key, false);
    }

    /// [`Rec::end_field`] for a key the caller knows is not among the record's keys so
    /// far (json_direct's memo: the same keys in the same order as a record before,
    /// which had no repeat up to there): no comparison with the keys before it.
    #[inline(always)]
    pub(crate) fn end_field_fresh(&mut self, key: Key) {
        self.end_field_as(key, true);
    }

    #[inline(always)]
    fn end_field_as(&mut self, key: Key, fresh: bool) {
        let Some(d) = self.dedup.as_deref_mut() else {
            self.n += 1;
            return;
        };
        let k = self.n as usize;
        if !d.listed && k < HASHED && (fresh || !d.hashes[..k].contains(&key.hash)) {
            d.hashes[k] = key.hash;
            self.n += 1;
            return;
        }
        if d.add_listed(self.out, self.hdr + 1, key) {
            self.n += 1;
        }
    }

    /// A field whose value is nil (fields fluentd's parsers set to nil themselves).
    pub fn nil(&mut self, key: &[u8]) {
        let at = self.key(key);
        raw::nil(self.out);
        self.end_field(at);
    }

    /// A field whose text is missing (a CSV/TSV column beyond the line's): nil, and
    /// for the time key an error, as fluentd's `parse_time(nil)` raises.
    pub fn nil_with_role(&mut self, ctx: &Ctx, key: &[u8], role: Role) {
        if role.is_time {
            self.time = Some(Err(TimeError::NotString));
            if !ctx.common.keep_time_key {
                return;
            }
        }
        self.nil(key);
    }

    /// A field with an integer value the parser computed itself.
    pub fn int(&mut self, key: &[u8], v: i64) {
        let at = self.key(key);
        raw::int(self.out, v);
        self.end_field(at);
    }

    /// A field whose key and value are encoded msgpack, written as they are (non-string
    /// keys of msgpack records; not deduplicated).
    pub fn raw_field(&mut self, key: &[u8], v: &[u8]) {
        let ks = self.out.len();
        self.out.extend_from_slice(key);
        let vs = self.out.len();
        self.out.extend_from_slice(v);
        if let Some(d) = self.dedup.as_deref_mut() {
            // Listed as raw, so its key is never compared with the string keys.
            if !d.listed {
                d.list(self.out, self.hdr + 1, ks);
            }
            d.push(self.out, Entry { ks, vs, ve: self.out.len(), latest: None, raw: true });
        }
        self.n += 1;
    }

    /// A string field without the bytes `drop` (syslog's structured data).
    pub fn plain_str_without(&mut self, key: &[u8], v: &[u8], drop: u8) {
        let at = self.key(key);
        raw::str_header(self.out, v.len() - memchr::memchr_iter(drop, v).count());
        self.out.extend(v.iter().filter(|&&b| b != drop));
        self.end_field(at);
    }

    /// A field written as is, bypassing the common parameters (apache2's own fields).
    pub fn plain_str(&mut self, key: &[u8], v: &[u8]) {
        let at = self.key(key);
        raw::str(self.out, v);
        self.end_field(at);
    }

    /// A string field, with the common parameters applied (`role` from
    /// [`Common::role`], possibly computed at config time).
    pub fn str(&mut self, ctx: &mut Ctx, key: &[u8], role: Role, v: &[u8]) {
        if role.is_time {
            self.time = Some(ctx.time.parse_str(v));
            if !ctx.common.keep_time_key {
                return;
            }
        }
        let at = self.key(key);
        if ctx.common.converts() && ctx.null_like(v) {
            raw::nil(self.out);
        } else if let Some(ci) = role.conv {
            convert_str(ctx, ci as usize, v, self.out);
        } else {
            raw::str(self.out, v);
        }
        self.end_field(at);
    }

    /// No key of the record so far repeats another, as far as the deduplication knows
    /// without listing the fields (none does when there is no deduplication).
    #[inline(always)]
    pub(crate) fn unrepeated(&self) -> bool {
        self.dedup.as_deref().is_none_or(|d| !d.listed)
    }

    /// A field whose value is already msgpack (JSON and msgpack records).
    pub fn value(&mut self, ctx: &mut Ctx, key: &[u8], v: ValueRef<'_>) {
        let role = ctx.common.role(key);
        if role.is_time {
            self.time = Some(ctx.time.parse_value(v));
            if !ctx.common.keep_time_key {
                return;
            }
        }
        let at = self.key(key);
        if v.is_nil() {
            raw::nil(self.out);
        } else if let Some(s) = v.as_str().filter(|_| v.kind() == Kind::Str) {
            if ctx.common.converts() && ctx.null_like(s) {
                raw::nil(self.out);
            } else if let Some(ci) = role.conv {
                convert_str(ctx, ci as usize, s, self.out);
            } else {
                self.out.extend_from_slice(v.as_bytes());
            }
        } else if let Some(ci) = role.conv {
            convert_value(ctx, ci as usize, v, self.out);
        } else {
            self.out.extend_from_slice(v.as_bytes());
        }
        self.end_field(at);
    }

    fn close(&mut self) {
        if let Some(d) = self.dedup.as_deref_mut() {
            if d.dups {
                d.rewrite(self.out, self.hdr + 1);
            }
        }
        raw::patch_header(self.out, self.hdr, self.n, true);
    }

    /// Closes the map; returns the time the record gave (an error if its time key did
    /// not parse), or the current time with `estimate_current_event`, or None.
    pub fn finish(mut self, ctx: &Ctx) -> Result<Option<EventTime>, TimeError> {
        self.close();
        match self.time {
            Some(r) => r.map(Some),
            None => Ok(self::estimate(ctx)),
        }
    }

    /// Closes the map of a parser that takes no time from its fields (`none`).
    pub fn finish_without_time_key(mut self, ctx: &Ctx) -> Option<EventTime> {
        self.close();
        estimate(ctx)
    }

    /// Closes the map of a parser that parsed its time itself (syslog, apache2).
    pub fn finish_with(mut self, time: Option<EventTime>) -> Option<EventTime> {
        self.close();
        time
    }
}

/// The current time with `estimate_current_event` (fluentd's `parse_time` default),
/// read once per text ([`Ctx::new_text`]).
#[inline]
pub fn estimate(ctx: &Ctx) -> Option<EventTime> {
    if !ctx.common.estimate_current_event {
        return None;
    }
    Some(ctx.now.get().unwrap_or_else(|| {
        let t = EventTime::now();
        ctx.now.set(Some(t));
        t
    }))
}

/// Ruby's `String#to_f`: the longest numeric prefix (`1e3x` -> 1000.0), 0.0 if none.
pub fn ruby_to_f(s: &[u8]) -> f64 {
    let mut i = 0;
    while s.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    let start = i;
    if matches!(s.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let st = *i;
        while s.get(*i).is_some_and(|b| {
            b.is_ascii_digit() || (*b == b'_' && *i > st && s.get(*i + 1).is_some_and(u8::is_ascii_digit))
        }) {
            *i += 1;
        }
        *i > st
    };
    if !digits(&mut i) {
        return 0.0;
    }
    let mut end = i;
    if s.get(i) == Some(&b'.') {
        let mut j = i + 1;
        if digits(&mut j) {
            end = j;
            i = j;
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if digits(&mut j) {
            end = j;
        }
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    for &b in &s[start..end] {
        if b != b'_' && n < buf.len() {
            buf[n] = b;
            n += 1;
        }
    }
    std::str::from_utf8(&buf[..n]).ok().and_then(|t| t.parse().ok()).unwrap_or(0.0)
}

fn write_big_int(out: &mut Vec<u8>, v: i128) {
    if let Ok(i) = i64::try_from(v) {
        raw::int(out, i);
    } else if let Ok(u) = u64::try_from(v) {
        raw::uint(out, u);
    } else {
        // Beyond msgpack's 64 bits (msgpack-ruby raises RangeError): the nearest float.
        raw::f64(out, v as f64);
    }
}

/// The pieces of Ruby's `String#split(delim)` before trailing empty ones are dropped (a
/// single space splits on blank runs, awk style).
#[derive(Clone)]
pub(crate) struct Split<'a> {
    rest: &'a [u8],
    delim: &'a [u8],
    done: bool,
}

pub(crate) fn split_raw<'a>(s: &'a [u8], delim: &'a [u8]) -> Split<'a> {
    Split { rest: s, delim, done: s.is_empty() }
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        if self.delim == b" " {
            let Some(start) = self.rest.iter().position(|b| !b.is_ascii_whitespace()) else {
                self.done = true;
                return None;
            };
            let r = &self.rest[start..];
            let end = r.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(r.len());
            self.rest = &r[end..];
            return Some(&r[..end]);
        }
        if self.delim.is_empty() {
            // split("") splits into characters; bytes are close enough for ASCII.
            let (p, r) = self.rest.split_at(1);
            self.rest = r;
            self.done = r.is_empty();
            return Some(p);
        }
        match memchr::memmem::find(self.rest, self.delim) {
            Some(i) => {
                let piece = &self.rest[..i];
                self.rest = &self.rest[i + self.delim.len()..];
                Some(piece)
            }
            None => {
                self.done = true;
                Some(self.rest)
            }
        }
    }
}

/// Ruby's `String#split(delim)`: trailing empty pieces are dropped.
fn split_pieces<'a>(s: &'a [u8], delim: &'a [u8]) -> std::iter::Take<Split<'a>> {
    let it = split_raw(s, delim);
    let keep = it.clone().enumerate().filter(|(_, p)| !p.is_empty()).last().map_or(0, |(i, _)| i + 1);
    it.take(keep)
}

fn write_array(out: &mut Vec<u8>, s: &[u8], delim: &[u8]) {
    let pieces = split_pieces(s, delim);
    raw::array_header(out, pieces.clone().count() as u32);
    for p in pieces {
        raw::str(out, p);
    }
}

const TRUTHY: [&[u8]; 3] = [b"true", b"yes", b"1"];

/// Applies converter `ci` to a string value.
fn convert_str(ctx: &mut Ctx, ci: usize, s: &[u8], out: &mut Vec<u8>) {
    let Some((_, conv)) = ctx.common.types.get(ci) else {
        raw::str(out, s);
        return;
    };
    match conv {
        Conv::String => raw::str(out, s),
        Conv::Integer => write_big_int(out, ruby_to_i(s)),
        Conv::Float => raw::f64(out, ruby_to_f(s)),
        Conv::Bool => raw::bool(out, TRUTHY.iter().any(|t| s.eq_ignore_ascii_case(t))),
        Conv::Array(d) => write_array(out, s, d),
        Conv::Time(_) => match ctx.conv_time.get_mut(ci).and_then(Option::as_mut).map(|p| p.parse_str(s)) {
            Some(Ok(t)) => raw::event_time(out, t),
            // `timep.parse(v) rescue nil`
            _ => raw::nil(out),
        },
    }
}

/// Applies converter `ci` to a non-string msgpack value (Ruby's conversions of
/// Integer/Float/true/Array/Hash values).
fn convert_value(ctx: &mut Ctx, ci: usize, v: ValueRef<'_>, out: &mut Vec<u8>) {
    let Some((_, conv)) = ctx.common.types.get(ci) else {
        out.extend_from_slice(v.as_bytes());
        return;
    };
    let numeric = matches!(v.kind(), Kind::UInt | Kind::NegInt);
    let float = matches!(v.kind(), Kind::F32 | Kind::F64);
    match conv {
        Conv::Integer if numeric => out.extend_from_slice(v.as_bytes()),
        Conv::Integer if float => {
            let f = v.as_f64().unwrap_or(0.0);
            if f.is_finite() {
                write_big_int(out, f.trunc() as i128)
            } else {
                raw::int(out, 0)
            }
        }
        Conv::Float if numeric => raw::f64(out, v.as_i64().map_or(0.0, |i| i as f64)),
        Conv::Float if float => raw::f64(out, v.as_f64().unwrap_or(0.0)),
        Conv::Time(_) => match ctx.conv_time.get_mut(ci).and_then(Option::as_mut).map(|p| p.parse_value(v)) {
            Some(Ok(t)) => raw::event_time(out, t),
            _ => raw::nil(out),
        },
        _ => {
            // Everything else goes through to_s, as Ruby's rescue paths do.
            let mut s = std::mem::take(&mut ctx.scratch);
            s.clear();
            write_to_s(v, &mut s);
            convert_str(ctx, ci, &s, out);
            ctx.scratch = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_numbers() {
        assert_eq!(ruby_to_f(b"1.5"), 1.5);
        assert_eq!(ruby_to_f(b" -2.5e2x"), -250.0);
        assert_eq!(ruby_to_f(b"1_000.5"), 1000.5);
        assert_eq!(ruby_to_f(b"abc"), 0.0);
        assert_eq!(ruby_to_f(b"1."), 1.0);
        assert_eq!(ruby_to_f(b"1e"), 1.0);
        assert_eq!(ruby_to_f(b".5"), 0.0);
    }

    #[test]
    fn ruby_split() {
        let v = |s: &str, d: &str| {
            split_pieces(s.as_bytes(), d.as_bytes())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(v("a,b,c", ","), ["a", "b", "c"]);
        assert_eq!(v("a,,b,,", ","), ["a", "", "b"]);
        assert_eq!(v(",a", ","), ["", "a"]);
        assert_eq!(v("", ","), Vec::<String>::new());
        assert_eq!(v(",,", ","), Vec::<String>::new());
        assert_eq!(v("  a  b ", " "), ["a", "b"]);
        assert_eq!(v("a::b", "::"), ["a", "b"]);
    }
}
