//! Record templates and pre-encoded frames. Records carry the send stamp as a
//! fixed-width uint64 (`0xcf` + 8 bytes) and frames carry a fixed-width chunk id, so a
//! frame is encoded once per connection and only patched in place per send.

use spate_protocol::encode::{self, raw, EntriesType, OptionsOut, TimeFormat};
use spate_protocol::{Compression, EventTime};

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSource {
    R1,
    R2,
    /// JSON lines used as templates, cycled.
    File(std::path::PathBuf),
}

impl std::str::FromStr for RecordSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "r1" | "R1" => RecordSource::R1,
            "r2" | "R2" => RecordSource::R2,
            path => RecordSource::File(path.into()),
        })
    }
}

/// Forward protocol mode to send in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendMode {
    Message,
    Forward,
    Packed,
    Compressed,
}

impl std::str::FromStr for SendMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "message" => Ok(SendMode::Message),
            "forward" => Ok(SendMode::Forward),
            "packed" => Ok(SendMode::Packed),
            "compressed" => Ok(SendMode::Compressed),
            o => Err(format!("unknown mode {o:?}; expected message, forward, packed or compressed")),
        }
    }
}

const WORDS: &[&str] = &[
    "GET", "POST", "user", "login", "served", "cache", "miss", "upstream", "timeout", "error", "retry", "db", "query",
    "ok", "slow", "api", "v1", "items", "id", "session", "token", "refresh", "200", "404", "503", "ms", "bytes",
    "from", "to",
];

fn message(i: u64, len: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(len + 16);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        s.push(b' ');
    }
    s.truncate(len);
    s
}

/// A record template: its map fields without the header and without the stamp.
#[derive(Debug, Clone)]
pub struct Template {
    pub fields: u32,
    pub body: Vec<u8>,
}

fn r1(i: u64) -> Template {
    let mut b = Vec::new();
    for (k, v) in [("host", "web-01"), ("level", "info")] {
        raw::str(&mut b, k.as_bytes());
        raw::str(&mut b, v.as_bytes());
    }
    raw::str(&mut b, b"status");
    raw::uint(&mut b, 200);
    raw::str(&mut b, b"message");
    raw::str(&mut b, &message(i, 80));
    Template { fields: 4, body: b }
}

fn r2(i: u64) -> Template {
    let mut t = r1(i);
    // Replace the 80-byte message with a 700-byte one and add a nested map.
    let mut b = Vec::new();
    for (k, v) in [("host", "web-01"), ("level", "info")] {
        raw::str(&mut b, k.as_bytes());
        raw::str(&mut b, v.as_bytes());
    }
    raw::str(&mut b, b"status");
    raw::uint(&mut b, 200);
    raw::str(&mut b, b"kubernetes");
    raw::map_header(&mut b, 6);
    for (k, v) in [
        ("namespace", "production"),
        ("pod", "web-7d9f8c6b5-x2x9q"),
        ("container", "app"),
        ("node", "ip-10-0-12-34.ec2.internal"),
        ("image", "registry.example.com/web:1.42.0"),
        ("labels", "app=web,tier=frontend,team=core"),
    ] {
        raw::str(&mut b, k.as_bytes());
        raw::str(&mut b, v.as_bytes());
    }
    raw::str(&mut b, b"message");
    raw::str(&mut b, &message(i, 700));
    t.fields = 5;
    t.body = b;
    t
}

/// R1 number `i` as a whole msgpack map (no send stamp): `{"host":"web-01",
/// "level":"info","status":200,"message":<80 printable ASCII>}`, 123 bytes. The shapes
/// are documented in bench/README.md; this module is their single source.
pub fn r1_record(i: u64) -> Vec<u8> {
    r1(i).to_record()
}

/// R2 number `i` as a whole msgpack map: R1's fields plus a 6-field `kubernetes` map and
/// a 700-byte message, 924 bytes.
pub fn r2_record(i: u64) -> Vec<u8> {
    r2(i).to_record()
}

impl Template {
    /// The template as a whole record (map header + fields).
    pub fn to_record(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(self.body.len() + 5);
        raw::map_header(&mut r, self.fields);
        r.extend_from_slice(&self.body);
        r
    }
}

/// Most records taken from a `--records` file, and most bytes of it read.
pub const MAX_RECORDS: usize = 100_000;
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Loads the templates for a source (64 varied ones for R1/R2).
pub fn templates(src: &RecordSource) -> Result<Vec<Template>, String> {
    match src {
        RecordSource::R1 => Ok((0..64).map(r1).collect()),
        RecordSource::R2 => Ok((0..64).map(r2).collect()),
        RecordSource::File(p) => {
            use std::io::BufRead;
            let f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
                let line = line.map_err(|e| format!("{}:{}: {e}", p.display(), n + 1))?;
                if line.trim().is_empty() {
                    continue;
                }
                // Records are sampled from the start of a large file: memory stays bounded.
                if out.len() >= MAX_RECORDS || bytes >= MAX_RECORD_BYTES {
                    break;
                }
                bytes += line.len();
                let v: serde_json::Value =
                    serde_json::from_str(&line).map_err(|e| format!("{}:{}: {e}", p.display(), n + 1))?;
                let serde_json::Value::Object(m) = &v else {
                    return Err(format!("{}:{}: each line must be a JSON object", p.display(), n + 1));
                };
                let mp = spate_protocol::json::to_msgpack(line.as_bytes())
                    .map_err(|e| format!("{}:{}: {e}", p.display(), n + 1))?;
                let hdr = spate_protocol::msgpack::head(&mp).ok().flatten().map_or(1, |h| h.hdr());
                out.push(Template { fields: m.len() as u32, body: mp[hdr..].to_vec() });
            }
            if out.is_empty() {
                return Err(format!("{}: no records", p.display()));
            }
            Ok(out)
        }
    }
}

/// Width of chunk ids (fixed, so they can be patched in place).
pub const CHUNK_LEN: usize = 24;

/// A frame encoded once, with the offsets to patch per send.
#[derive(Debug, Clone)]
pub struct FrameTemplate {
    /// For packed/forward/message: the whole frame(s). For compressed: the plain entries.
    pub bytes: Vec<u8>,
    pub stamp_offsets: Vec<usize>,
    pub chunk_offsets: Vec<usize>,
    pub events: u32,
    /// Frames in `bytes` (message mode sends several per write).
    pub frames: u32,
    mode: SendMode,
    tag: Vec<u8>,
    ack: bool,
}

/// Encodes `[time, record+stamp]` and returns where the 8 stamp bytes are.
fn entry_with_stamp(out: &mut Vec<u8>, t: EventTime, tf: TimeFormat, tpl: &Template, stamp_field: &[u8]) -> usize {
    out.push(0x92);
    encode::time(out, t, tf);
    record_with_stamp(out, tpl, stamp_field)
}

fn record_with_stamp(out: &mut Vec<u8>, tpl: &Template, stamp_field: &[u8]) -> usize {
    raw::map_header(out, tpl.fields + 1);
    out.extend_from_slice(&tpl.body);
    raw::str(out, stamp_field);
    out.push(0xcf);
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    at
}

impl FrameTemplate {
    /// Builds the frame for `events` events; `ack` adds a chunk id slot; `size` the
    /// `size` option (Forward and PackedForward frames, as fluentd's out_forward sends).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: SendMode,
        tag: &[u8],
        tpls: &[Template],
        first: usize,
        events: u32,
        tf: TimeFormat,
        stamp_field: &[u8],
        ack: bool,
        size: bool,
    ) -> FrameTemplate {
        let now = EventTime::now();
        let placeholder = [b'0'; CHUNK_LEN];
        let sized = size && mode != SendMode::Message;
        let opt = OptionsOut {
            chunk: ack.then_some(&placeholder[..]),
            size: sized.then_some(u64::from(events)),
            compressed: None,
        };
        let mut ft = FrameTemplate {
            bytes: Vec::new(),
            stamp_offsets: Vec::new(),
            chunk_offsets: Vec::new(),
            events,
            frames: 1,
            mode,
            tag: tag.to_vec(),
            ack,
        };
        match mode {
            SendMode::Message => {
                ft.frames = events;
                for i in 0..events as usize {
                    let tpl = &tpls[(first + i) % tpls.len()];
                    let f = &mut ft.bytes;
                    f.push(if ack { 0x94 } else { 0x93 });
                    raw::str(f, tag);
                    encode::time(f, now, tf);
                    let at = record_with_stamp(f, tpl, stamp_field);
                    ft.stamp_offsets.push(at);
                    if ack {
                        raw::map_header(f, 1);
                        raw::str(f, b"chunk");
                        raw::str_header(f, CHUNK_LEN);
                        ft.chunk_offsets.push(f.len());
                        f.extend_from_slice(&placeholder);
                    }
                }
            }
            SendMode::Forward | SendMode::Packed | SendMode::Compressed => {
                let mut entries = Vec::new();
                let mut offs = Vec::new();
                for i in 0..events as usize {
                    offs.push(entry_with_stamp(&mut entries, now, tf, &tpls[(first + i) % tpls.len()], stamp_field));
                }
                if mode == SendMode::Compressed {
                    ft.bytes = entries;
                    ft.stamp_offsets = offs;
                    return ft;
                }
                let mut f = Vec::new();
                let base = match mode {
                    SendMode::Forward => {
                        f.push(if ack || sized { 0x93 } else { 0x92 });
                        raw::str(&mut f, tag);
                        raw::array_header(&mut f, events);
                        f.len()
                    }
                    _ => {
                        encode::packed_forward_header(&mut f, tag, entries.len(), EntriesType::Bin, &opt);
                        f.len()
                    }
                };
                f.extend_from_slice(&entries);
                ft.stamp_offsets = offs.iter().map(|o| o + base).collect();
                if ack || sized {
                    raw::map_header(&mut f, u32::from(ack) + u32::from(sized));
                }
                if sized {
                    raw::str(&mut f, b"size");
                    raw::uint(&mut f, u64::from(events));
                }
                if ack {
                    raw::str(&mut f, b"chunk");
                    raw::str_header(&mut f, CHUNK_LEN);
                    ft.chunk_offsets.push(f.len());
                    f.extend_from_slice(&placeholder);
                }
                ft.bytes = f;
            }
        }
        ft
    }

    /// Patches stamps (send time, ns) and chunk ids; returns the bytes to send. For
    /// compressed mode the entries are gzipped into `scratch`.
    pub fn render<'a>(
        &'a mut self,
        stamp_ns: u64,
        chunk_ids: &[[u8; CHUNK_LEN]],
        scratch: &'a mut Vec<u8>,
    ) -> &'a [u8] {
        let s = stamp_ns.to_be_bytes();
        for &o in &self.stamp_offsets {
            self.bytes[o..o + 8].copy_from_slice(&s);
        }
        if self.mode == SendMode::Compressed {
            scratch.clear();
            let opt = OptionsOut {
                chunk: if self.ack { chunk_ids.first().map(|c| &c[..]) } else { None },
                size: Some(self.events as u64),
                compressed: Some(Compression::Gzip),
            };
            let z = spate_protocol::compress::gzip(&self.bytes, 1);
            encode::packed_forward(scratch, &self.tag, &z, EntriesType::Bin, &opt);
            return scratch;
        }
        for (o, id) in self.chunk_offsets.iter().zip(chunk_ids) {
            self.bytes[*o..*o + CHUNK_LEN].copy_from_slice(id);
        }
        &self.bytes
    }
}

/// The frames one sender cycles through: up to 16 variants that start at different
/// templates (so every line of a `--records` file is sent, not only the first `batch`,
/// and as evenly as the batch allows),
/// plus, built once when needed, the short frame that ends an `--events` run.
#[derive(Debug, Clone)]
pub struct FrameSet {
    variants: Vec<FrameTemplate>,
    next: usize,
    short: Option<FrameTemplate>,
    tpls_len: usize,
    first: usize,
    batch: u32,
    build: FrameParams,
}

/// What a [`FrameSet`] builds its frames from.
#[derive(Debug, Clone)]
pub struct FrameParams {
    pub mode: SendMode,
    pub tag: Vec<u8>,
    pub time: TimeFormat,
    pub stamp_field: Vec<u8>,
    pub ack: bool,
    /// Send the `size` option.
    pub size: bool,
}

impl FrameSet {
    /// `batch`: events per write (in message mode, frames per write, at most 64).
    pub fn new(p: FrameParams, tpls: &[Template], first: usize, batch: u32) -> FrameSet {
        let batch = if p.mode == SendMode::Message { batch.clamp(1, 64) } else { batch.max(1) };
        let n = tpls.len().max(1);
        // Enough variants that the cycle of frames goes through the templates evenly
        // (len / gcd(len, batch) frames), up to 16.
        let (mut a, mut b) = (n, batch as usize);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        let count = (n / a.max(1)).clamp(1, 16);
        let variants = (0..count)
            .map(|v| {
                FrameTemplate::new(
                    p.mode,
                    &p.tag,
                    tpls,
                    first + v * batch as usize,
                    batch,
                    p.time,
                    &p.stamp_field,
                    p.ack,
                    p.size,
                )
            })
            .collect();
        FrameSet { variants, next: 0, short: None, tpls_len: n, first, batch, build: p }
    }

    /// Events in a full write.
    pub fn batch(&self) -> u32 {
        self.batch
    }

    /// The next frame to send with `events` events (`batch`, or fewer for the last one).
    pub fn take(&mut self, tpls: &[Template], events: u32) -> &mut FrameTemplate {
        if events >= self.batch || events == 0 {
            let i = self.next % self.variants.len();
            self.next = self.next.wrapping_add(1);
            return &mut self.variants[i];
        }
        if self.short.as_ref().is_none_or(|s| s.events != events) {
            let p = &self.build;
            let first = (self.first + self.next * self.batch as usize) % self.tpls_len;
            self.short =
                Some(FrameTemplate::new(p.mode, &p.tag, tpls, first, events, p.time, &p.stamp_field, p.ack, p.size));
        }
        match &mut self.short {
            Some(s) => s,
            None => &mut self.variants[0],
        }
    }
}

/// A chunk id: fixed-width, unique per connection and sequence number
/// (`{conn:08x}{seq:016x}`), written without formatting machinery: it is made per frame.
pub fn chunk_id(conn: u32, seq: u64) -> [u8; CHUNK_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [b'0'; CHUNK_LEN];
    let v = (u128::from(conn) << 64) | u128::from(seq);
    for (i, b) in id.iter_mut().enumerate() {
        *b = HEX[((v >> (4 * (CHUNK_LEN - 1 - i))) & 0xf) as usize];
    }
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunk_ids_are_the_hex_of_connection_and_sequence() {
        for (conn, seq) in [(0u32, 0u64), (7, 1), (0xdead_beef, u64::MAX), (1, 0x0123_4567_89ab_cdef)] {
            assert_eq!(super::chunk_id(conn, seq).to_vec(), format!("{conn:08x}{seq:016x}").into_bytes());
        }
    }

    use super::*;
    use bytes::BytesMut;
    use spate_protocol::{Frame, FrameDecoder, Limits};

    #[test]
    fn templates_patch_in_place_and_decode() {
        let tpls = templates(&RecordSource::R1).unwrap();
        for mode in [SendMode::Message, SendMode::Forward, SendMode::Packed, SendMode::Compressed] {
            let mut ft = FrameTemplate::new(mode, b"lg", &tpls, 0, 3, TimeFormat::EventTime, b"_spate_ts", true, false);
            let ids: Vec<_> = (0..ft.frames as u64).map(|s| chunk_id(7, s)).collect();
            let mut scratch = Vec::new();
            let bytes = ft.render(123_456_789, &ids, &mut scratch).to_vec();
            let mut buf = BytesMut::from(&bytes[..]);
            let mut dec = FrameDecoder::new(Limits::default());
            let mut n = 0;
            while let Some(Frame::Events(b)) = dec.decode(&mut buf).unwrap() {
                assert_eq!(b.option.chunk.as_deref().map(<[u8]>::len), Some(CHUNK_LEN));
                for e in b.events() {
                    assert_eq!(e.record.get(b"_spate_ts").and_then(|v| v.as_i64()), Some(123_456_789));
                    n += 1;
                }
            }
            assert_eq!(n, 3, "{mode:?}");
        }
    }

    #[test]
    fn shapes_have_the_documented_sizes() {
        for i in [0, 3, 1000] {
            assert_eq!(r1_record(i).len(), 123);
            assert_eq!(r2_record(i).len(), 924);
        }
        assert_ne!(r1_record(1), r1_record(2), "messages vary");
        let r2 = r2_record(3);
        let r = spate_protocol::RecordRef::new(&r2).expect("a map");
        assert_eq!(r.get(b"message").and_then(|v| v.as_str()).map(<[u8]>::len), Some(700));
        assert!(r.get(b"kubernetes").is_some());
    }

    #[test]
    fn r1_is_about_140_bytes() {
        let t = &templates(&RecordSource::R1).unwrap()[0];
        let mut r = Vec::new();
        record_with_stamp(&mut r, t, b"_spate_ts");
        assert!((120..180).contains(&r.len()), "{}", r.len());
    }
}
