//! Streaming inflation of CompressedPackedForward entries in bounded slices.
//!
//! [`compress::inflate`](crate::compress::inflate) inflates a whole frame into one
//! buffer: memory grows with the inflated size (up to `decompression_size_limit`, 256
//! MiB), so a few small compression bombs cost gigabytes. An [`Inflater`] instead
//! inflates at most one slice per [`Inflater::next_slice`] call and hands back the
//! complete entries found so far as a [`Slice`]: the caller routes them, then asks for
//! the next. Memory is the decoder's state plus one slice plus the one entry that spans
//! slices, whatever the compression ratio; [`Inflater::memory`] says how much, before
//! each call, so a server can keep a budget and make connections wait for it.
//!
//! zstd windows are capped at 8 MiB ([`ZSTD_MAX_WINDOW_LOG`]), the largest window zstd's
//! standard levels (1-19) use: a frame declaring a larger window (`--ultra`, `--long`)
//! is refused before zstd allocates it. The total inflated size is still bounded by
//! `limit` (`decompression_size_limit`).

use std::io::Read;

use bytes::{Bytes, BytesMut};
use zstd::stream::raw::{Decoder as ZstdDecoder, InBuffer, Operation, OutBuffer};

use crate::compress::Compression;
use crate::error::{DecodeError, ErrorKind, Result};
use crate::event::{read_entry, EntriesFormat, EntryCheck};
use crate::msgpack::Skipper;

/// Inflated bytes per [`Inflater::next_slice`] call that a server should use: large
/// enough that per-slice costs vanish, small enough that one slice takes tens of
/// microseconds of CPU.
pub const DEFAULT_SLICE: usize = 64 << 10;

/// log2 of the largest zstd window accepted (8 MiB).
pub const ZSTD_MAX_WINDOW_LOG: u32 = 23;

/// Memory of a gzip decoder: zlib's 32 KiB window and its inflate state, rounded up.
const GZIP_STATE: usize = 48 << 10;
/// Memory of a zstd decoder besides its window: the context, one block (128 KiB) and
/// slack, rounded up.
const ZSTD_STATE: usize = 256 << 10;

/// Complete entries from one [`Inflater::next_slice`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// `[time, record]` entries back to back (PackedForward format).
    pub entries: Bytes,
    /// Valid events in `entries`.
    pub count: u32,
    /// Entries that are well-formed msgpack but not valid events.
    pub invalid: u32,
}

enum Codec {
    /// No data at all: nothing to inflate (fluentd accepts an empty entries string).
    Empty,
    Gzip(Box<flate2::bufread::MultiGzDecoder<bytes::buf::Reader<Bytes>>>),
    Zstd(Box<ZstdState>),
}

struct ZstdState {
    dec: ZstdDecoder<'static>,
    input: Bytes,
    pos: usize,
    /// The next byte of `input` starts a frame (or the data ends there).
    at_frame_start: bool,
    /// Largest window of the frames started so far (the context keeps its buffers).
    window: usize,
}

/// Inflates one frame's compressed entries a slice at a time (see the module doc).
pub struct Inflater {
    codec: Codec,
    /// Inflated bytes not yet returned: complete entries up to `scanned`, then at most
    /// one incomplete entry.
    pending: BytesMut,
    scanned: usize,
    /// Finds the end of the entry that spans slices without rescanning it.
    skipper: Skipper,
    /// `skipper` holds the state of the incomplete entry at `scanned`.
    in_tail: bool,
    inflated: u64,
    limit: usize,
    max_depth: usize,
    eof: bool,
    done: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("inflated", &self.inflated)
            .field("pending", &self.pending.len())
            .field("eof", &self.eof)
            .finish()
    }
}

/// The window a zstd frame starting at `data` declares, if its header is readable
/// (skippable frames: 0). See RFC 8878, 3.1.1.1.
fn zstd_frame_window(data: &[u8]) -> Option<usize> {
    let magic = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    if magic & 0xffff_fff0 == 0x184d_2a50 {
        return Some(0);
    }
    if magic != 0xfd2f_b528 {
        return None;
    }
    let fhd = *data.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    if !single_segment {
        let wd = *data.get(5)?;
        let log = 10 + u32::from(wd >> 3);
        let base = 1u64.checked_shl(log)?;
        let window = base + (base >> 3) * u64::from(wd & 7);
        return usize::try_from(window).ok();
    }
    // Single segment: the window is the frame content size.
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = [1usize, 2, 4, 8][usize::from(fhd >> 6)];
    let at = 5 + dict_len;
    let raw = data.get(at..at + fcs_len)?;
    let mut v = 0u64;
    for (i, b) in raw.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    if fcs_len == 2 {
        v += 256;
    }
    usize::try_from(v).ok()
}

impl Inflater {
    /// Prepares to inflate `data` (gzip members or zstd frames back to back) into at most
    /// `limit` bytes of entries; `max_depth` bounds nesting as for uncompressed frames.
    pub fn new(kind: Compression, data: Bytes, limit: usize, max_depth: usize) -> std::result::Result<Self, ErrorKind> {
        let codec = if data.is_empty() {
            Codec::Empty
        } else {
            match kind {
                Compression::Text => return Err(ErrorKind::Inflate("entries are not compressed".into())),
                Compression::Gzip => {
                    use bytes::Buf;
                    Codec::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(data.reader())))
                }
                Compression::Zstd => {
                    let inflate_err = |e: std::io::Error| ErrorKind::Inflate(e.to_string());
                    let mut dec = ZstdDecoder::new().map_err(inflate_err)?;
                    dec.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(ZSTD_MAX_WINDOW_LOG))
                        .map_err(inflate_err)?;
                    Codec::Zstd(Box::new(ZstdState { dec, input: data, pos: 0, at_frame_start: true, window: 0 }))
                }
            }
        };
        Ok(Inflater {
            codec,
            pending: BytesMut::new(),
            scanned: 0,
            skipper: Skipper::new(),
            in_tail: false,
            inflated: 0,
            limit,
            max_depth,
            eof: false,
            done: false,
        })
    }

    /// Bytes inflated so far.
    pub fn inflated(&self) -> u64 {
        self.inflated
    }

    /// True once every entry was returned.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Memory the next [`Inflater::next_slice`]`(slice)` call may hold at its peak: the
    /// decoder's state (for zstd, its window, looking ahead at the next frame's header),
    /// the entry carried over from the last slice, and the new slice.
    pub fn memory(&self, slice: usize) -> usize {
        let state = match &self.codec {
            Codec::Empty => 0,
            Codec::Gzip(_) => GZIP_STATE,
            Codec::Zstd(z) => {
                let mut window = z.window;
                if z.at_frame_start && z.pos < z.input.len() {
                    let next = zstd_frame_window(&z.input[z.pos..]).unwrap_or(1 << ZSTD_MAX_WINDOW_LOG);
                    window = window.max(next.min(1 << ZSTD_MAX_WINDOW_LOG));
                }
                ZSTD_STATE + window
            }
        };
        state + self.pending.len() + slice
    }

    /// Inflates up to `slice` more bytes and returns the entries completed so far (which
    /// may be none, while one large entry spans slices). `Ok(None)`: everything was
    /// returned. Errors (bad compressed data, over the limit, malformed or truncated
    /// entries; offsets count from the start of the inflated entries) end the frame.
    pub fn next_slice(&mut self, slice: usize) -> Result<Option<Slice>> {
        if self.done {
            return Ok(None);
        }
        if !self.eof {
            let start = self.pending.len();
            let want = slice.max(1);
            self.pending.resize(start + want, 0);
            let filled = match self.fill(start) {
                Ok(n) => n,
                Err(k) => {
                    self.done = true;
                    return Err(DecodeError::new(self.inflated as usize, k));
                }
            };
            self.pending.truncate(start + filled);
            self.inflated += filled as u64;
            if self.inflated > self.limit as u64 {
                self.done = true;
                return Err(DecodeError::new(self.limit, ErrorKind::InflateTooLarge { limit: self.limit as u64 }));
            }
        }
        let (count, invalid) = match self.scan() {
            Ok(c) => c,
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        if self.eof && self.scanned < self.pending.len() {
            self.done = true;
            return Err(DecodeError::new(
                (self.inflated as usize).saturating_sub(self.pending.len() - self.scanned),
                ErrorKind::Invalid {
                    what: "compressed entries",
                    why: "the inflated data ends in the middle of an entry",
                },
            ));
        }
        let entries = self.pending.split_to(self.scanned).freeze();
        self.scanned = 0;
        if self.eof && self.pending.is_empty() {
            self.done = true;
            // Release the buffer now rather than when the inflater is dropped.
            self.pending = BytesMut::new();
        }
        Ok(Some(Slice { entries, count, invalid }))
    }

    /// Inflates into `pending[start..]` until it is full or the data ends (then sets
    /// `eof`). Returns the bytes written.
    fn fill(&mut self, start: usize) -> std::result::Result<usize, ErrorKind> {
        let out = &mut self.pending[start..];
        let mut filled = 0;
        match &mut self.codec {
            Codec::Empty => self.eof = true,
            Codec::Gzip(d) => {
                while filled < out.len() {
                    match d.read(&mut out[filled..]) {
                        Ok(0) => {
                            self.eof = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(ErrorKind::Inflate(e.to_string())),
                    }
                }
            }
            Codec::Zstd(z) => {
                while filled < out.len() {
                    if z.at_frame_start {
                        if z.pos >= z.input.len() {
                            self.eof = true;
                            break;
                        }
                        let w = zstd_frame_window(&z.input[z.pos..]).unwrap_or(0);
                        z.window = z.window.max(w.min(1 << ZSTD_MAX_WINDOW_LOG));
                    }
                    let mut inb = InBuffer::around(&z.input[z.pos..]);
                    let mut outb = OutBuffer::around(&mut out[filled..]);
                    let hint = z.dec.run(&mut inb, &mut outb).map_err(|e| ErrorKind::Inflate(e.to_string()))?;
                    let (used, made) = (inb.pos(), outb.pos());
                    z.pos += used;
                    filled += made;
                    z.at_frame_start = hint == 0;
                    if used == 0 && made == 0 && hint != 0 {
                        return Err(ErrorKind::Inflate(if z.pos >= z.input.len() {
                            "zstd data ends in the middle of a frame".into()
                        } else {
                            "zstd decoder made no progress".into()
                        }));
                    }
                }
            }
        }
        Ok(filled)
    }

    /// Walks the entries after `scanned`, moving `scanned` past each complete one;
    /// returns the valid and invalid entries found.
    fn scan(&mut self) -> Result<(u32, u32)> {
        let (mut valid, mut invalid) = (0u32, 0u32);
        let base = self.inflated as usize - self.pending.len();
        let limit = self.limit;
        loop {
            let rest = &self.pending[self.scanned..];
            if rest.is_empty() {
                break;
            }
            if !self.in_tail {
                // A run of one-byte values (a bomb of zeros is one) is a run of invalid
                // entries: count it without a call per byte.
                let run = one_byte_run(rest);
                if run > 0 {
                    invalid = invalid.saturating_add(u32::try_from(run).unwrap_or(u32::MAX));
                    self.scanned += run;
                    continue;
                }
                match read_entry(rest, EntriesFormat::Packed, self.max_depth) {
                    Ok((check, used)) => {
                        match check {
                            EntryCheck::Valid(_) => valid = valid.saturating_add(1),
                            EntryCheck::Invalid => invalid = invalid.saturating_add(1),
                        }
                        self.scanned += used;
                        continue;
                    }
                    // Malformed or incomplete: the resumable walk tells which.
                    Err(_) => self.in_tail = true,
                }
            }
            let rest = &self.pending[self.scanned..];
            match self.skipper.advance(rest, limit, self.max_depth) {
                Ok(None) => break,
                Ok(Some(len)) => {
                    self.in_tail = false;
                    let (check, used) = read_entry(&rest[..len], EntriesFormat::Packed, self.max_depth)
                        .map_err(|e| e.at(base + self.scanned))?;
                    match check {
                        EntryCheck::Valid(_) => valid = valid.saturating_add(1),
                        EntryCheck::Invalid => invalid = invalid.saturating_add(1),
                    }
                    self.scanned += used;
                }
                Err(e) => return Err(e.at(base + self.scanned)),
            }
        }
        Ok((valid, invalid))
    }
}

/// Length of the run of one-byte values at the start of `b`; positive fixints (zeros)
/// are checked eight at a time.
#[inline]
fn one_byte_run(b: &[u8]) -> usize {
    let mut n = 0;
    for c in b.chunks_exact(8) {
        let w = u64::from_le_bytes(c.try_into().unwrap_or([0x80; 8]));
        if w & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        n += 8;
    }
    n + b[n..].iter().take_while(|&&x| one_byte_value(x)).count()
}

/// Msgpack values that are one byte long: fixints, nil, booleans.
#[inline]
fn one_byte_value(b: u8) -> bool {
    matches!(b, 0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::{gzip, zstd_compress};

    fn entry(i: u32) -> Vec<u8> {
        let mut v = vec![0x92, 0xce];
        v.extend_from_slice(&i.to_be_bytes());
        v.extend_from_slice(&[0x81, 0xa1, b'k', 0xa1, b'v']);
        v
    }

    fn drain(inf: &mut Inflater, slice: usize) -> Result<(Vec<u8>, u32, u32, usize)> {
        let (mut all, mut c, mut inv, mut calls) = (Vec::new(), 0, 0, 0);
        while let Some(s) = inf.next_slice(slice)? {
            calls += 1;
            all.extend_from_slice(&s.entries);
            c += s.count;
            inv += s.invalid;
        }
        Ok((all, c, inv, calls))
    }

    #[test]
    fn gzip_and_zstd_in_small_slices_give_the_same_entries() {
        let raw: Vec<u8> = (0..5000).flat_map(entry).collect();
        for (kind, data) in [(Compression::Gzip, gzip(&raw, 6)), (Compression::Zstd, zstd_compress(&raw, 3))] {
            for slice in [1, 7, 100, 4096, 1 << 20] {
                let mut inf = Inflater::new(kind, Bytes::from(data.clone()), 1 << 30, 32).unwrap();
                let (all, c, inv, _) = drain(&mut inf, slice).unwrap();
                assert_eq!(all, raw, "{kind:?} slice {slice}");
                assert_eq!((c, inv), (5000, 0));
                assert_eq!(inf.inflated(), raw.len() as u64);
            }
        }
    }

    #[test]
    fn members_and_frames_back_to_back() {
        let raw: Vec<u8> = (0..300).flat_map(entry).collect();
        let (a, b) = raw.split_at(1001);
        let mut g = gzip(a, 6);
        g.extend(gzip(b, 6));
        let mut z = zstd_compress(a, 3);
        z.extend(zstd_compress(b, 19));
        for (kind, data) in [(Compression::Gzip, g), (Compression::Zstd, z)] {
            let mut inf = Inflater::new(kind, Bytes::from(data), 1 << 20, 32).unwrap();
            let (all, c, _, _) = drain(&mut inf, 512).unwrap();
            assert_eq!(all, raw);
            assert_eq!(c, 300);
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_with_bounded_memory() {
        let zeros = vec![0u8; 64 << 20];
        for (kind, data) in [(Compression::Gzip, gzip(&zeros, 9)), (Compression::Zstd, zstd_compress(&zeros, 19))] {
            let mut inf = Inflater::new(kind, Bytes::from(data), 16 << 20, 32).unwrap();
            let mut peak = 0;
            let err = loop {
                peak = peak.max(inf.memory(DEFAULT_SLICE));
                match inf.next_slice(DEFAULT_SLICE) {
                    Ok(Some(s)) => assert_eq!(s.count, 0),
                    Ok(None) => panic!("{kind:?}: a bomb was accepted"),
                    Err(e) => break e,
                }
            };
            assert_eq!(err.kind, ErrorKind::InflateTooLarge { limit: 16 << 20 });
            assert!(peak <= ZSTD_STATE + (8 << 20) + 2 * DEFAULT_SLICE, "{kind:?}: {peak}");
            assert!(inf.pending.capacity() <= 2 * DEFAULT_SLICE, "{kind:?}: {}", inf.pending.capacity());
            assert_eq!(inf.next_slice(DEFAULT_SLICE), Ok(None));
        }
    }

    #[test]
    fn one_byte_runs_count_as_invalid_entries() {
        let mut raw = vec![0u8, 1, 0xc0, 0xc3, 0xff];
        raw.extend(entry(1));
        raw.extend([0x05, 0x06]);
        let mut inf = Inflater::new(Compression::Gzip, Bytes::from(gzip(&raw, 6)), 1 << 20, 32).unwrap();
        let (all, c, inv, _) = drain(&mut inf, 3).unwrap();
        assert_eq!(all, raw);
        assert_eq!((c, inv), (1, 7));
    }

    #[test]
    fn an_entry_spanning_slices_comes_back_whole() {
        // One 300 KiB record: returned whole, in the slice that completes it.
        let mut raw = vec![0x92, 0x01, 0x81, 0xa1, b'k', 0xc6];
        raw.extend_from_slice(&(300u32 << 10).to_be_bytes());
        raw.extend(std::iter::repeat_n(7u8, 300 << 10));
        raw.extend(entry(2));
        let mut inf = Inflater::new(Compression::Zstd, Bytes::from(zstd_compress(&raw, 3)), 1 << 20, 32).unwrap();
        let mut sizes = Vec::new();
        while let Some(s) = inf.next_slice(64 << 10).unwrap() {
            sizes.push((s.entries.len(), s.count));
        }
        assert_eq!(sizes.iter().map(|s| s.0).sum::<usize>(), raw.len());
        assert_eq!(sizes.iter().map(|s| s.1).sum::<u32>(), 2);
        assert!(sizes.iter().any(|&(len, c)| len > 300 << 10 && c >= 1));
    }

    #[test]
    fn truncated_and_corrupt_data_are_errors() {
        let raw: Vec<u8> = (0..100).flat_map(entry).collect();
        let g = gzip(&raw, 6);
        let z = zstd_compress(&raw, 3);
        for (kind, data) in [(Compression::Gzip, &g[..g.len() - 10]), (Compression::Zstd, &z[..z.len() - 10])] {
            let mut inf = Inflater::new(kind, Bytes::copy_from_slice(data), 1 << 20, 32).unwrap();
            assert!(drain(&mut inf, 100).is_err(), "{kind:?}");
        }
        for kind in [Compression::Gzip, Compression::Zstd] {
            let mut inf = Inflater::new(kind, Bytes::from_static(b"not compressed at all"), 1 << 20, 32).unwrap();
            assert!(matches!(drain(&mut inf, 100), Err(DecodeError { kind: ErrorKind::Inflate(_), .. })));
        }
        // Entries cut in the middle of an event.
        let cut = gzip(&raw[..raw.len() - 3], 6);
        let mut inf = Inflater::new(Compression::Gzip, Bytes::from(cut), 1 << 20, 32).unwrap();
        assert!(drain(&mut inf, 100).is_err());
    }

    #[test]
    fn huge_zstd_windows_are_refused() {
        let mut w = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        w.window_log(27).unwrap();
        w.long_distance_matching(true).unwrap();
        std::io::Write::write_all(&mut w, &vec![1u8; 1 << 20]).unwrap();
        let data = w.finish().unwrap();
        assert_eq!(zstd_frame_window(&data), Some(1 << 27));
        let mut inf = Inflater::new(Compression::Zstd, Bytes::from(data), 1 << 30, 32).unwrap();
        assert!(inf.memory(0) <= ZSTD_STATE + (8 << 20));
        assert!(matches!(drain(&mut inf, 1 << 16), Err(DecodeError { kind: ErrorKind::Inflate(_), .. })));
    }

    #[test]
    fn empty_data_is_no_entries() {
        let mut inf = Inflater::new(Compression::Gzip, Bytes::new(), 10, 32).unwrap();
        let (all, c, inv, _) = drain(&mut inf, 10).unwrap();
        assert!(all.is_empty() && c == 0 && inv == 0);
    }
}
