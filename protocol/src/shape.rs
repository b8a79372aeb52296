//! Entry layouts: checking a packed `[time, record]` entry against the layout of the
//! entry before it instead of walking it.
//!
//! Walking a msgpack map is one chain of dependent loads: where a value starts is known
//! only once the value before it was read. For R1 entries that chain was most of what
//! decoding a PackedForward batch cost (perf, S1's path in process).
//!
//! The entries of a batch mostly have the same layout: the same keys, and values of the
//! same types, in the same order. A layout keeps the header bytes (marker, and length
//! bytes for str8/16/32, bin and ext) of every value of the entry it was learned from,
//! and its offset. An entry is checked by comparing its headers with those:
//! - keys, the entry's array, its time, the map and values other than strings must have
//!   the same header bytes, so they have the same length;
//! - a string value (fixstr or str8) may have any length: its length shifts the offsets
//!   of the headers after it.
//!
//! Only string values are then a chain (each shifts what follows); the other headers are
//! loads that nothing waits for. A value's length depends only on its header, so an
//! entry that matches is a well-formed entry of the same kinds of values, and is valid.
//!
//! Checking entries was a quarter of spate's CPU in the S4 relay (perf, 2026-12-01), so:
//! - headers that must match and lie within 8 bytes of one another are one masked word:
//!   the load generator's R1 entry (array, time, map, 5 keys, 2 other values, 3
//!   strings) takes 6 word compares and 3 string widths instead of 13 header steps;
//! - a string of the learned width changes nothing (a predicted branch), so the loads
//!   after it do not wait for it: the strings' chain costs only when widths change;
//! - loads index a fixed window without bounds checks (see [`Shape::matches`]).
//!
//! Per R1 entry that took 21 ns down to 12 ns (in process, a batch of 1000 checked
//! over and over; 19 to 14 ns with messages of random length).
//!
//! Only entries the decoder's fast path takes are learned: a fixarray of two, a time
//! that is valid whatever its value (EventTime with ext type 0, or an unsigned integer
//! up to 32 bits), and a flat map. Anything else takes [`crate::event::read_entry`].

use crate::msgpack;

/// The most value headers a layout holds: the entry's array, its time, the map and 20
/// keys and values (records of up to 10 fields). Merged into words they are fewer.
const HEADERS: usize = 24;

/// The layout of an entry walked before; `n == 0` when there is none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// The entry's length.
    len: usize,
    /// Where the record (the map) starts.
    record_at: usize,
    /// How many steps: words of headers to compare, and strings.
    n: usize,
    /// Each step's offset in the entry.
    at: [u32; HEADERS],
    /// A word's header bytes (little-endian, the byte at `at` lowest), masked.
    head: [u64; HEADERS],
    /// Which bytes of `head` to compare.
    mask: [u64; HEADERS],
    /// For a string value, its width (header and text) when learned; 0 for a word.
    width: [u32; HEADERS],
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            len: 0,
            record_at: 0,
            n: 0,
            at: [0; HEADERS],
            head: [0; HEADERS],
            mask: [0; HEADERS],
            width: [0; HEADERS],
        }
    }
}

/// Entries up to this long are checked in a window of `buf` without bounds checks
/// (a power of two: offsets are masked with `WINDOW - 1`).
const WINDOW: usize = 512;

/// The mask of a header of `n` bytes (1 to 5).
#[inline(always)]
fn mask(n: usize) -> u64 {
    u64::MAX >> (64 - 8 * n)
}

/// 8 bytes at `buf[i..]`, little-endian; 0 past the end (a match is only returned once
/// the entry is known to end 8 bytes before `buf` does, so no load that decided it was
/// past the end).
#[inline(always)]
fn load8(buf: &[u8], i: usize) -> u64 {
    buf.get(i..i.wrapping_add(8)).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
}

/// The width of the string value whose first 8 bytes are `w` (fixstr or str8), or None.
#[inline(always)]
fn str_width(w: u64) -> Option<usize> {
    let m = w as u8;
    if m & 0xe0 == 0xa0 {
        Some(1 + (m & 0x1f) as usize)
    } else if m == 0xd9 {
        Some(2 + (w >> 8) as u8 as usize)
    } else {
        None
    }
}

impl Shape {
    /// The length of the entry at `buf[pos..]` if it has this layout. None when it does
    /// not, or when it does not end 8 bytes or more before `buf` does (the last entry is
    /// walked).
    #[inline(always)]
    pub(crate) fn matches(&self, buf: &[u8], pos: usize) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        // Most entries have a window of WINDOW + 8 bytes in `buf`: the loads then index
        // a fixed-size array with a masked offset, which needs no bounds check. The
        // mask changes nothing when the entry is at most WINDOW long: every step's
        // offset is below the entry's length, whatever the string widths (each step
        // lies before the steps after it, and a string is at least 1 byte wide).
        // An entry that grew past the window, or whose layout was learned from an entry
        // longer than half of it, takes the checked loads.
        let checked = || self.steps(|o| load8(buf, pos.wrapping_add(o)));
        let win = if self.len <= WINDOW / 2 {
            buf.get(pos..pos.wrapping_add(WINDOW + 8)).and_then(|w| <&[u8; WINDOW + 8]>::try_from(w).ok())
        } else {
            None
        };
        let (len, diff) = match win {
            Some(win) => match self.steps(|o| {
                let i = o & (WINDOW - 1);
                win.get(i..i + 8).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
            })? {
                (len, diff) if len <= WINDOW => (len, diff),
                _ => checked()?,
            },
            None => checked()?,
        };
        (diff == 0 && pos.checked_add(len + 8)? <= buf.len()).then_some(len)
    }

    /// Goes through the steps with `load(offset)` giving the 8 bytes at an offset in
    /// the entry: the entry's length (the strings' widths applied) and the header bits
    /// that differ (0 if none; a string value that is not one any more differs too).
    #[inline(always)]
    fn steps(&self, load: impl Fn(usize) -> u64) -> Option<(usize, u64)> {
        let (mut shift, mut diff) = (0isize, 0u64);
        for i in 0..self.n.min(HEADERS) {
            let w = load((self.at[i] as usize).wrapping_add_signed(shift));
            if self.width[i] == 0 {
                diff |= (w & self.mask[i]) ^ self.head[i];
            } else {
                // Not a string any more: a miss, noted in `diff` (not returned early,
                // so a windowed load past the window is still found out by the length).
                let Some(width) = str_width(w) else {
                    diff |= 1;
                    continue;
                };
                // A branch, not arithmetic: when strings keep their width (as a host
                // or a level mostly does), the branch is predicted and the steps after
                // it load without waiting for this one.
                if width != self.width[i] as usize {
                    shift += width as isize - self.width[i] as isize;
                }
            }
        }
        Some((self.len.checked_add_signed(shift)?, diff))
    }

    /// Walks the entry at `buf[pos..]` if the fast path takes it, and returns its
    /// layout (and so its length); the entry is then valid. None for anything else.
    #[inline]
    pub(crate) fn learn(buf: &[u8], pos: usize) -> Option<Shape> {
        let mut s = Shape::default();
        let e = buf.get(pos..)?;
        if *e.first()? != 0x92 {
            return None;
        }
        s.exact(e, 0, 1)?;
        // The time: only forms that are valid whatever their value.
        let p = match *e.get(1)? {
            0xd7 if e.get(2) == Some(&0) => 11,
            0xce => 6,
            0xcd => 4,
            0xcc => 3,
            _ => return None,
        };
        s.exact(e, 1, if p == 11 { 2 } else { 1 })?;
        let (body, values) = msgpack::small_map_head(e, p)?;
        s.record_at = p;
        s.exact(e, p, body - p)?;
        let mut p = body;
        // The array, time and map, and the keys and values, before any merging.
        if 3 + values > HEADERS {
            return None;
        }
        for v in 0..values {
            let m = *e.get(p)?;
            let end = msgpack::scalar_end_fast(e, p)?;
            if v % 2 == 1 && (m & 0xe0 == 0xa0 || m == 0xd9) {
                s.string(p, end - p)?;
            } else {
                let hdr = match m {
                    0xc4 | 0xd9 | 0xc7 => 2,
                    0xc5 | 0xda | 0xc8 => 3,
                    0xc6 | 0xdb | 0xc9 => 5,
                    _ => 1,
                };
                s.exact(e, p, hdr)?;
            }
            p = end;
        }
        // Offsets are u32: a longer entry is walked.
        u32::try_from(p).ok()?;
        s.len = p;
        Some(s)
    }

    /// The entry's length.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Where the record (the map) starts in the entry: after the array's header and the
    /// time, whose lengths a match does not change.
    #[inline(always)]
    pub(crate) fn record_at(&self) -> usize {
        self.record_at
    }

    /// A header of `bytes` bytes (1 to 5) at `e[at..]` that must match exactly: put in
    /// the word before it when it ends within that word's 8 bytes (no string between
    /// them), else a word of its own.
    #[inline(always)]
    fn exact(&mut self, e: &[u8], at: usize, bytes: usize) -> Option<()> {
        let h = e.get(at..at + bytes)?;
        let mut w = [0u8; 8];
        w.get_mut(..bytes)?.copy_from_slice(h);
        let (head, m) = (u64::from_le_bytes(w), mask(bytes));
        if let Some(last) = self.n.checked_sub(1) {
            let start = *self.at.get(last)? as usize;
            if *self.width.get(last)? == 0 && at + bytes <= start + 8 {
                let sh = 8 * (at - start) as u32;
                *self.head.get_mut(last)? |= head << sh;
                *self.mask.get_mut(last)? |= m << sh;
                return Some(());
            }
        }
        self.push(at, head, m, 0)
    }

    /// A string value of `width` bytes (header and text) at `at`.
    #[inline(always)]
    fn string(&mut self, at: usize, width: usize) -> Option<()> {
        self.push(at, 0, 0, width as u32)
    }

    /// A new step; None when the layout is full (the entry is then walked).
    #[inline(always)]
    fn push(&mut self, at: usize, head: u64, mask: u64, width: u32) -> Option<()> {
        let i = self.n;
        let (a, h, m, w) = (self.at.get_mut(i)?, self.head.get_mut(i)?, self.mask.get_mut(i)?, self.width.get_mut(i)?);
        (*a, *h, *m, *w) = (at as u32, head, mask, width);
        self.n += 1;
        Some(())
    }
}

/// A layout and when to look for a new one: what [`crate::frame`]'s walk and
/// [`crate::Events`] keep while they go through a batch.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shapes {
    shape: Shape,
    /// Entries to leave to the walk before trying to learn again: learning an entry
    /// that cannot be learned (a nested record, a float time) walks part of it for
    /// nothing, so after a failure it is tried again only after 16 entries.
    rest: u8,
}

/// Entries left to the walk after a failed [`Shape::learn`].
const BACK_OFF: u8 = 16;

impl Shapes {
    /// The length of the entry at `buf[pos..]` and where its record starts, if it has
    /// the layout of an entry before it or its layout can be learned now; the entry is
    /// then valid. None: the caller walks it.
    #[inline(always)]
    pub(crate) fn entry(&mut self, buf: &[u8], pos: usize) -> Option<(usize, usize)> {
        if let Some(len) = self.shape.matches(buf, pos) {
            return Some((len, self.shape.record_at()));
        }
        if self.rest > 0 {
            self.rest -= 1;
            return None;
        }
        match Shape::learn(buf, pos) {
            Some(s) => {
                self.shape = s;
                Some((s.len(), s.record_at()))
            }
            None => {
                self.rest = BACK_OFF;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{read_entry, EntriesFormat, EntryCheck};
    use spate_testkit::rng::Rng;

    fn entry(time: &[u8], fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut e = vec![0x92];
        e.extend_from_slice(time);
        e.push(0x80 | fields.len() as u8);
        for (k, v) in fields {
            e.push(0xa0 | k.len() as u8);
            e.extend_from_slice(k);
            e.extend_from_slice(v);
        }
        e
    }

    fn str8(s: &[u8]) -> Vec<u8> {
        let mut v = vec![0xd9, s.len() as u8];
        v.extend_from_slice(s);
        v
    }

    fn fixstr(s: &[u8]) -> Vec<u8> {
        let mut v = vec![0xa0 | s.len() as u8];
        v.extend_from_slice(s);
        v
    }

    const T: &[u8] = &[0xd7, 0, 0x60, 0, 0, 0, 0, 0, 0, 1];

    /// `e` followed by 8 bytes, as a batch would have the next entry.
    fn padded(e: &[u8]) -> Vec<u8> {
        let mut b = e.to_vec();
        b.extend_from_slice(&[0xc0; 8]);
        b
    }

    fn r1(host: &[u8], status: &[u8], message: &[u8]) -> Vec<u8> {
        let m = if message.len() < 32 { fixstr(message) } else { str8(message) };
        entry(T, &[(b"host", &fixstr(host)), (b"status", status), (b"message", &m)])
    }

    #[test]
    fn entries_of_the_same_layout_match_with_their_own_lengths() {
        let a = r1(b"web", b"\xcc\xc8", &[b'a'; 40]);
        let s = Shape::learn(&a, 0).expect("learned");
        assert_eq!(s.len(), a.len());
        // 9 headers in 6 steps: [array, time] [map, key], host, [key, status], [key],
        // message.
        assert_eq!((s.n, &s.width[..s.n]), (6, &[0, 0, 4, 0, 0, 42][..]));
        let (check, used) = read_entry(&a, EntriesFormat::Packed, 8).unwrap();
        assert!(matches!(check, EntryCheck::Valid(_)));
        assert_eq!(used, a.len());
        // Strings of other lengths (fixstr and str8 either way), other times and
        // other contents: the same layout, each with its own length, as read_entry
        // says.
        for b in [
            r1(b"web", b"\xcc\xc8", &[b'a'; 40]),
            r1(b"", b"\xcc\xc9", &[b'b'; 255]),
            r1(b"a-much-longer-host-name", b"\xcc\x01", b"short"),
            r1(&[b'h'; 31], b"\xcc\xff", &[b'c'; 32]),
        ] {
            let buf = padded(&b);
            assert_eq!(s.matches(&buf, 0), Some(b.len()));
            assert_eq!(read_entry(&buf, EntriesFormat::Packed, 8).unwrap().1, b.len());
        }
        // The same at an offset in a batch.
        let mut buf = a.clone();
        let b = r1(b"x", b"\xcc\x00", b"y");
        buf.extend_from_slice(&b);
        buf.extend_from_slice(&[0; 8]);
        assert_eq!(s.matches(&buf, a.len()), Some(b.len()));
    }

    #[test]
    fn entries_longer_than_the_window_match_too() {
        let long = |n: usize| {
            let (a, b, c) = (str8(&vec![b'a'; n]), str8(&vec![b'b'; n]), str8(&vec![b'c'; n]));
            entry(T, &[(b"a", &a), (b"b", &b), (b"status", b"\xcc\xc8"), (b"c", &c)])
        };
        // Learned long, learned short and grown past the window, shrunk back: each at
        // the start of a buffer with room for the window and without.
        for (learn, other) in [(250, 250), (250, 10), (10, 250), (10, 10)] {
            let s = Shape::learn(&long(learn), 0).expect("learned");
            let b = long(other);
            for pad in [8, WINDOW, 2 * WINDOW] {
                let mut buf = b.clone();
                buf.extend(std::iter::repeat_n(0xc0, pad));
                assert_eq!(s.matches(&buf, 0), Some(b.len()), "learned {learn}, other {other}, pad {pad}");
            }
        }
    }

    #[test]
    fn a_header_byte_that_differs_is_a_miss() {
        let a = r1(b"web", b"\xcc\xc8", &[b'a'; 40]);
        let s = Shape::learn(&a, 0).unwrap();
        // The bytes that must match: the array, the time's marker and type, the map,
        // the keys' headers, the status's marker.
        let exact: Vec<usize> = (0..s.n)
            .filter(|&i| s.width[i] == 0)
            .flat_map(|i| (0..8).filter(move |k| s.mask[i] >> (8 * k) & 0xff != 0).map(move |k| s.at[i] as usize + k))
            .collect();
        assert_eq!(exact, vec![0, 1, 2, 11, 12, 21, 28, 30]);
        for &h in &exact {
            let mut b = a.clone();
            b[h] ^= 0x01;
            assert_eq!(s.matches(&padded(&b), 0), None, "header byte {h}");
        }
        // A string value that is not a fixstr or str8 any more: a miss.
        for v in [&b"\xc0"[..], b"\x01", b"\xda\x00\x01x", b"\xc4\x01x"] {
            let b = entry(T, &[(b"host", v), (b"status", b"\xcc\xc8"), (b"message", &str8(&[b'a'; 40]))]);
            assert_eq!(s.matches(&padded(&b), 0), None, "{v:?}");
        }
        // Bytes that are not headers (the time's payload, string contents, the
        // status's value) may differ.
        let mut b = a.clone();
        for i in (0..b.len()).filter(|i| !exact.contains(i) && ![17, 38, 39].contains(i)) {
            b[i] = b[i].wrapping_add(1);
        }
        assert_eq!(s.matches(&padded(&b), 0), Some(a.len()));
    }

    #[test]
    fn entries_ending_near_the_end_are_walked() {
        let a = r1(b"web", b"\x01", b"m");
        let s = Shape::learn(&a, 0).unwrap();
        let mut buf = a.clone();
        for _ in 0..8 {
            assert_eq!(s.matches(&buf, 0), None, "{} bytes after", buf.len() - a.len());
            buf.push(0);
        }
        assert_eq!(s.matches(&buf, 0), Some(a.len()));
        // A longer string than the buffer holds, or a truncated entry: never a match.
        let b = r1(b"web", b"\x01", &[b'm'; 200]);
        for cut in 0..b.len() + 8 {
            let mut t = b.clone();
            t.resize(cut, 0);
            assert_eq!(s.matches(&t, 0), None, "cut at {cut}");
        }
    }

    #[test]
    fn only_always_valid_times_and_flat_maps_are_learned() {
        for t in [T, &[0xce, 0, 0, 0, 1], &[0xcd, 0, 1], &[0xcc, 1]] {
            assert!(Shape::learn(&entry(t, &[(b"k", b"\x01")]), 0).is_some(), "{t:?}");
        }
        // A float (range-checked), uint64 (may not fit), a negative int, an ext of
        // another type, fluent-bit's [time, meta]: read_entry decides.
        for t in [
            &[0xcb, 0x41, 0xd0, 0, 0, 0, 0, 0, 0][..],
            &[0xcf, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0xff],
            &[0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x92, 0xce, 0, 0, 0, 1, 0x80],
        ] {
            assert!(Shape::learn(&entry(t, &[(b"k", b"\x01")]), 0).is_none(), "{t:?}");
        }
        // A nested value, a non-map record, too many fields.
        assert!(Shape::learn(&entry(T, &[(b"k", b"\x91\x01")]), 0).is_none());
        let mut e = vec![0x92];
        e.extend_from_slice(T);
        e.push(0x01);
        assert!(Shape::learn(&e, 0).is_none());
        let many: Vec<(&[u8], &[u8])> = (0..11).map(|_| (&b"k"[..], &b"\x01"[..])).collect();
        assert!(Shape::learn(&entry(T, &many), 0).is_none());
        let ten: Vec<(&[u8], &[u8])> = (0..10).map(|_| (&b"k"[..], &b"\x01"[..])).collect();
        assert!(Shape::learn(&entry(T, &ten), 0).is_some());
        // Truncated anywhere: nothing learned.
        let a = r1(b"web", b"\x01", b"m");
        for cut in 0..a.len() {
            assert!(Shape::learn(&a[..cut], 0).is_none(), "cut at {cut}");
        }
    }

    /// Value kinds: every scalar form (multi-byte headers included) and two containers.
    const KINDS: usize = 24;

    fn value(r: &mut Rng, kind: usize) -> Vec<u8> {
        let with = |head: &[u8], body: Vec<u8>| [head, &body[..]].concat();
        match kind {
            0 => vec![0xc0],
            1 => vec![0xc2 + r.below(2) as u8],
            2 => vec![r.below(0x80) as u8],
            3 => vec![0xe0 | r.below(32) as u8],
            4 => with(&[0xcc], r.bytes(1)),
            5 => with(&[0xcd], r.bytes(2)),
            6 => with(&[0xce], r.bytes(4)),
            7 => with(&[0xcf], r.bytes(8)),
            8 => {
                let i = r.below(4);
                with(&[0xd0 + i as u8], r.bytes(1 << i))
            }
            9 => with(&[0xcb], r.bytes(8)),
            10 => with(&[0xca], r.bytes(4)),
            11 => {
                let n = r.below(32);
                with(&[0xa0 | n as u8], r.bytes(n))
            }
            12 => {
                let n = r.below(300);
                with(&[0xd9, n as u8], r.bytes(n % 256))
            }
            13 => {
                let n = r.below(300);
                with(&[0xda, (n >> 8) as u8, n as u8], r.bytes(n))
            }
            14 => {
                let n = r.below(40);
                with(&[0xc4, n as u8], r.bytes(n))
            }
            15 => {
                let n = r.below(40);
                with(&[0xc5, 0, n as u8], r.bytes(n))
            }
            16 => {
                let n = r.below(40);
                with(&[0xc6, 0, 0, 0, n as u8], r.bytes(n))
            }
            17 => {
                let n = r.below(40);
                with(&[0xc7, n as u8, r.next_u64() as u8], r.bytes(n))
            }
            18 => {
                let n = r.below(40);
                with(&[0xc8, 0, n as u8, r.next_u64() as u8], r.bytes(n))
            }
            19 => {
                let n = r.below(40);
                with(&[0xdb, 0, 0, 0, n as u8], r.bytes(n))
            }
            20 => {
                let w = [1usize, 2, 4, 8, 16][r.below(5)];
                with(&[0xd4 + (w.trailing_zeros() as u8), r.next_u64() as u8], r.bytes(w))
            }
            21 => vec![0x91, 0x01],
            22 => vec![0x81, 0xa1, b'k', 0x01],
            _ => vec![0xc1],
        }
    }

    fn time(r: &mut Rng, kind: usize) -> Vec<u8> {
        match kind {
            0 => [&[0xd7, 0][..], &r.bytes(8)].concat(),
            1 => [&[0xce][..], &r.bytes(4)].concat(),
            2 => [&[0xcd][..], &r.bytes(2)].concat(),
            3 => [&[0xcc][..], &r.bytes(1)].concat(),
            4 => [&[0xcb][..], &r.bytes(8)].concat(),
            5 => [&[0xcf][..], &r.bytes(8)].concat(),
            6 => [&[0xd7, 1][..], &r.bytes(8)].concat(),
            _ => vec![r.below(0x80) as u8],
        }
    }

    /// An entry of the given kinds: (time kind, map16 or not, (key, value kind)...).
    fn build(r: &mut Rng, t: usize, map16: bool, fields: &[(Vec<u8>, usize)]) -> Vec<u8> {
        let mut e = vec![0x92];
        e.extend(time(r, t));
        if map16 {
            e.extend([0xde, 0, fields.len() as u8]);
        } else {
            e.push(0x80 | fields.len() as u8);
        }
        for (k, v) in fields {
            e.extend_from_slice(k);
            e.extend(value(r, *v));
        }
        e
    }

    #[test]
    fn a_match_is_what_read_entry_says_for_arbitrary_entries() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut learned, mut matched) = (0, 0);
        for _ in 0..40_000 {
            // A layout of kinds, and a second entry that mostly keeps them.
            let t = r.below(8);
            let map16 = r.below(4) == 0;
            let n = r.below(12);
            let kinds: Vec<(Vec<u8>, usize)> = (0..n)
                .map(|_| {
                    // Keys (the same in both entries): mostly strings; values: any
                    // kind, strings more often.
                    let k = if r.below(5) == 0 { r.below(KINDS) } else { 11 + r.below(2) };
                    let v = if r.below(3) == 0 { 11 + r.below(2) } else { r.below(KINDS) };
                    (value(&mut r, k), v)
                })
                .collect();
            let a = build(&mut r, t, map16, &kinds);
            let other: Vec<(Vec<u8>, usize)> =
                kinds.iter().map(|(k, v)| (k.clone(), if r.below(20) == 0 { r.below(KINDS) } else { *v })).collect();
            let tb = if r.below(10) == 0 { r.below(8) } else { t };
            let b = build(&mut r, tb, map16, &other);
            let Some(s) = Shape::learn(&a, 0) else { continue };
            learned += 1;
            let (check, used) = read_entry(&a, EntriesFormat::Packed, 8).expect("a learned entry reads");
            assert!(matches!(check, EntryCheck::Valid(_)), "{a:x?}");
            assert_eq!(used, s.len(), "{a:x?}");
            // b, followed by bytes of the next entry (or cut anywhere).
            let mut buf = b.clone();
            // Short of the window or past it (both ways of loading).
            let pad = if r.below(2) == 0 { 8 + r.below(8) } else { WINDOW + r.below(600) };
            buf.extend(r.bytes(pad));
            if r.below(8) == 0 {
                buf.truncate(r.below(buf.len() + 1));
            }
            if let Some(len) = s.matches(&buf, 0) {
                matched += 1;
                let (check, used) = read_entry(&buf, EntriesFormat::Packed, 8).expect("a matched entry reads");
                assert!(matches!(check, EntryCheck::Valid(_)), "learned {a:x?}, matched {buf:x?}");
                assert_eq!(used, len, "learned {a:x?}, matched {buf:x?}");
            }
        }
        // The cases exercise both sides.
        assert!(learned > 5_000 && matched > 3_000, "learned {learned}, matched {matched}");
    }

    #[test]
    fn walks_and_events_agree_with_read_entry_over_mixed_batches() {
        use crate::event::Events;
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..2_000 {
            // Runs of one layout, other layouts, nested and invalid entries, in one batch.
            let mut batch = Vec::new();
            for _ in 0..r.below(40) {
                let t = if r.below(6) == 0 { r.below(8) } else { 0 };
                let n = r.below(4);
                let kinds: Vec<(Vec<u8>, usize)> = (0..n)
                    .map(|i| (vec![0xa1, b'a' + i as u8], if r.below(4) == 0 { r.below(23) } else { 12 }))
                    .collect();
                for _ in 0..1 + r.below(6) {
                    batch.extend(build(&mut r, t, false, &kinds));
                }
            }
            let mut expect = Vec::new();
            let mut pos = 0;
            while pos < batch.len() {
                let (check, used) = read_entry(&batch[pos..], EntriesFormat::Packed, 8).unwrap();
                if let EntryCheck::Valid(ev) = check {
                    expect.push((ev.time, ev.time_raw.to_vec(), ev.record.as_bytes().to_vec(), ev.raw.to_vec()));
                }
                pos += used;
            }
            let got: Vec<_> = Events::new(&batch, EntriesFormat::Packed)
                .map(|ev| (ev.time, ev.time_raw.to_vec(), ev.record.as_bytes().to_vec(), ev.raw.to_vec()))
                .collect();
            assert_eq!(got, expect);
            let mut shapes = Shapes::default();
            let (mut pos, mut valid) = (0, 0);
            while pos < batch.len() {
                let used = match shapes.entry(&batch, pos) {
                    Some((len, _)) => {
                        valid += 1;
                        len
                    }
                    None => {
                        let (check, used) = read_entry(&batch[pos..], EntriesFormat::Packed, 8).unwrap();
                        valid += matches!(check, EntryCheck::Valid(_)) as usize;
                        used
                    }
                };
                pos += used;
            }
            assert_eq!((pos, valid), (batch.len(), expect.len()));
        }
    }
}
