//! `s3_object_key_format`: object keys built exactly as fluent-plugin-s3's `write`
//! builds them, in its three passes:
//!
//! 1. `%{path}` and `%{file_extension}` are put in (other `%{...}` stay);
//! 2. fluentd's `extract_placeholders`: with a `time` chunk key the whole string goes
//!    through strftime at the chunk's timekey (in the buffer's zone), then `${tag}`,
//!    `${tag[N]}`, `${chunk_id}` and record-field chunk keys (`${name}`);
//! 3. `%{time_slice}`, `%{index}`, `%{hex_random}`, `%{uuid_flush}` (and, with
//!    `check_object false`, `%{hms_slice}`/`%{date_slice}`) are put in; any other
//!    `%{...}` becomes empty (Ruby's `gsub` with a hash).
//!
//! `%{hostname}` is replaced once, at configuration time, as fluent-plugin-s3 does.

use crate::format::{strftime, Zone};

/// `index_format`: `%d`, `%05d`, `%x`, `%08X` (`0` is the only flag, and required with a
/// width, as fluent-plugin-s3 checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexFormat {
    pub width: usize,
    pub radix: u8,
}

impl IndexFormat {
    pub fn parse(s: &str) -> Result<IndexFormat, String> {
        let bad = || {
            format!(
                "index_format {s:?}: should follow `%[flags][width]type`. `0` is the only supported flag, and is mandatory if width is specified. `d`, `x` and `X` are supported types"
            )
        };
        let body = s.strip_prefix('%').ok_or_else(bad)?;
        let (digits, ty) = body.split_at(body.len().saturating_sub(1));
        let radix = match ty {
            "d" => b'd',
            "x" => b'x',
            "X" => b'X',
            _ => return Err(bad()),
        };
        if !digits.bytes().all(|c| c.is_ascii_digit()) || (!digits.is_empty() && !digits.starts_with('0')) {
            return Err(bad());
        }
        let width = if digits.len() > 1 { digits[1..].parse::<usize>().map_err(|_| bad())? } else { 0 };
        if width > 64 {
            return Err(bad());
        }
        Ok(IndexFormat { width, radix })
    }

    pub fn render(&self, i: u64) -> String {
        match self.radix {
            b'x' => format!("{i:0w$x}", w = self.width),
            b'X' => format!("{i:0w$X}", w = self.width),
            _ => format!("{i:0w$}", w = self.width),
        }
    }
}

/// What the key format needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFormat {
    /// `s3_object_key_format` with `%{hostname}` already replaced.
    pub format: String,
    pub path: String,
    pub ext: &'static str,
    pub index: IndexFormat,
    pub hex_random_length: usize,
    /// strftime format of `%{time_slice}` (`time_slice_format`, or one derived from
    /// `timekey`).
    pub time_slice_format: String,
    /// The buffer's timekey zone.
    pub zone: Zone,
    /// `time` is a chunk key: the whole key goes through strftime.
    pub time_chunk_key: bool,
    pub check_object: bool,
}

/// The chunk a key is made for.
pub struct KeyChunk<'a> {
    pub tag: &'a str,
    pub timekey: Option<i64>,
    pub chunk_id: &'a [u8; 16],
    pub vars: &'a [(String, String)],
}

/// fluentd's `timekey_to_timeformat`.
pub fn timekey_to_timeformat(timekey: Option<i64>) -> &'static str {
    match timekey {
        None => "",
        Some(t) if t < 60 => "%Y%m%d%H%M%S",
        Some(t) if t < 3600 => "%Y%m%d%H%M",
        Some(t) if t < 86400 => "%Y%m%d%H",
        Some(_) => "%Y%m%d",
    }
}

/// Placeholders fluent-plugin-s3 removed: a configuration error there too.
pub const REMOVED: [&str; 4] = ["%{uuid}", "%{uuid:random}", "%{uuid:hostname}", "%{uuid:timestamp}"];

/// Replaces each `%{name}` in `s` by `f(name)`; `None` keeps the placeholder as is.
fn subst(s: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut rest = s;
    while let Some(i) = rest.find("%{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        // `[^}]+`: at least one character.
        match after.find('}') {
            Some(j) if j > 0 => {
                let name = &after[..j];
                match f(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("%{");
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[j + 1..];
            }
            _ => {
                out.push_str("%{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn fmt_time(f: &str, t: i64, zone: Zone) -> String {
    let mut out = Vec::with_capacity(f.len() + 8);
    strftime(&mut out, f, t, 0, zone);
    String::from_utf8_lossy(&out).into_owned()
}

impl KeyFormat {
    pub fn uses_uuid_flush(&self) -> bool {
        self.format.contains("%{uuid_flush}")
    }

    pub fn uses_index(&self) -> bool {
        self.format.contains("%{index}")
    }

    /// `%{hex_random}` of a chunk: fixed for the chunk across retries. fluent-plugin-s3
    /// takes the reversed hex of fluentd's chunk id (whose tail is random); spate's
    /// chunk ids end in a per-shard sequence number, so the hex of a SHA-256 of the id
    /// is used instead, to keep the spread across key prefixes.
    pub fn hex_random(&self, chunk_id: &[u8; 16]) -> String {
        let h = super::sigv4::sha256_hex(chunk_id);
        h[..self.hex_random_length.min(h.len())].to_string()
    }

    /// The time slice of a chunk (empty without a time chunk key).
    pub fn time_slice(&self, timekey: Option<i64>) -> String {
        timekey.map(|t| fmt_time(&self.time_slice_format, t, self.zone)).unwrap_or_default()
    }

    /// The key for attempt `index` (`check_object true`) or the only key (`false`:
    /// `now` gives `%{hms_slice}`, in UTC as fluent-plugin-s3 without `localtime`).
    /// `uuid` is this write's `%{uuid_flush}`.
    pub fn key(&self, c: &KeyChunk<'_>, index: u64, uuid: &str, now: i64) -> String {
        // Pass 1.
        let s = subst(&self.format, |n| match n {
            "path" => Some(self.path.clone()),
            "file_extension" => Some(self.ext.to_string()),
            _ => None,
        });
        // Pass 2: extract_placeholders.
        let s = match (self.time_chunk_key, c.timekey) {
            (true, Some(t)) => fmt_time(&s, t, self.zone),
            _ => s,
        };
        let s = crate::buffer::placeholders::expand(&s, c.tag, &spate_protocol::hex(c.chunk_id), c.vars);
        // Pass 3.
        let slice = self.time_slice(c.timekey);
        subst(&s, |n| {
            Some(match n {
                "time_slice" => slice.clone(),
                "hex_random" => self.hex_random(c.chunk_id),
                "uuid_flush" => uuid.to_string(),
                "index" if self.check_object => self.index.render(index),
                "date_slice" if !self.check_object => slice.clone(),
                "hms_slice" if !self.check_object => fmt_time("%H%M%S", now, Zone::Utc),
                _ => String::new(),
            })
        })
    }
}

/// A random (version 4) UUID, as Ruby's `SecureRandom.uuid`.
pub fn uuid_v4() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // The OS RNG failing is not worth failing a flush: fall back to time + counter.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        b[..8].copy_from_slice(&t.to_be_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = spate_protocol::hex(&b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kf(format: &str) -> KeyFormat {
        KeyFormat {
            format: format.into(),
            path: "logs/".into(),
            ext: "gz",
            index: IndexFormat::parse("%d").unwrap(),
            hex_random_length: 4,
            time_slice_format: "%Y%m%d%H".into(),
            zone: Zone::Utc,
            time_chunk_key: true,
            check_object: true,
        }
    }

    const ID: [u8; 16] = [0xab; 16];
    // 2026-11-25 03:00:00 UTC
    const T: i64 = 1_795_575_600;

    fn chunk<'a>(vars: &'a [(String, String)]) -> KeyChunk<'a> {
        KeyChunk { tag: "app.web", timekey: Some(T), chunk_id: &ID, vars }
    }

    #[test]
    fn default_format() {
        let k = kf("%{path}%{time_slice}_%{index}.%{file_extension}");
        assert_eq!(k.key(&chunk(&[]), 0, "", 0), "logs/2026112503_0.gz");
        assert_eq!(k.key(&chunk(&[]), 3, "", 0), "logs/2026112503_3.gz");
    }

    #[test]
    fn placeholders_in_fluentds_order() {
        let vars = vec![("topic".to_string(), "t1".to_string())];
        let k = kf("%{path}${tag}/${tag[1]}/%Y/%m/${topic}/%{time_slice}_%{hex_random}_%{uuid_flush}_${chunk_id}.%{file_extension}");
        let key = k.key(&chunk(&vars), 0, "U-U", 0);
        let hex = "ab".repeat(16);
        assert_eq!(key, format!("logs/app.web/web/2026/11/t1/2026112503_{}_U-U_{hex}.gz", k.hex_random(&ID)));
        assert_eq!(k.hex_random(&ID).len(), 4);
        // A path with strftime directives is expanded too (it is put in before pass 2).
        let mut k2 = kf("%{path}%{index}");
        k2.path = "y=%Y/".into();
        assert_eq!(k2.key(&chunk(&[]), 1, "", 0), "y=2026/1");
        // Unknown %{...}: empty in pass 3; without a time chunk key, no strftime.
        let mut k3 = kf("%Y-%{nope}-%{index}");
        k3.time_chunk_key = false;
        assert_eq!(k3.key(&KeyChunk { tag: "t", timekey: None, chunk_id: &ID, vars: &[] }, 2, "", 0), "%Y--2");
    }

    #[test]
    fn check_object_false_uses_hms_slice_and_no_index() {
        let mut k = kf("%{path}/%{time_slice}_%{hms_slice}.%{file_extension}_%{index}%{date_slice}");
        k.check_object = false;
        // 03:04:05
        assert_eq!(k.key(&chunk(&[]), 0, "", T + 245), "logs//2026112503_030405.gz_2026112503");
    }

    #[test]
    fn index_formats() {
        assert_eq!(IndexFormat::parse("%05d").unwrap().render(42), "00042");
        assert_eq!(IndexFormat::parse("%x").unwrap().render(255), "ff");
        assert_eq!(IndexFormat::parse("%04X").unwrap().render(255), "00FF");
        for bad in ["%5d", "d", "%s", "%-3d", "%0"] {
            assert!(IndexFormat::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(timekey_to_timeformat(Some(3600)), "%Y%m%d%H");
        assert_eq!(timekey_to_timeformat(Some(86400)), "%Y%m%d");
        assert_eq!(timekey_to_timeformat(Some(30)), "%Y%m%d%H%M%S");
    }

    #[test]
    fn uuids() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, uuid_v4());
    }
}
