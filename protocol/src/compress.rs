//! Bounded decompression (gzip with several members back to back, zstd with several
//! frames) and gzip compression for CompressedPackedForward.
//!
//! Inflation stops with an error as soon as the output would pass the limit, so a
//! compression bomb costs at most `limit + 1` bytes of output buffer (see [`inflate`]
//! for the decoders' own state).

use std::io::Read;

use crate::error::ErrorKind;

/// Compression named by `option.compressed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `"text"`: entries are not compressed.
    Text,
    /// `"gzip"`: one or more gzip members (fluentd's `compress gzip`).
    Gzip,
    /// `"zstd"`: one or more zstd frames (fluentd >= 1.17's `compress zstd`).
    Zstd,
}

impl Compression {
    /// The compression `option.compressed` names, or
    /// [`ErrorKind::UnsupportedCompression`].
    pub fn parse(name: &[u8]) -> Result<Self, ErrorKind> {
        match name {
            b"text" => Ok(Compression::Text),
            b"gzip" => Ok(Compression::Gzip),
            b"zstd" => Ok(Compression::Zstd),
            other => Err(ErrorKind::UnsupportedCompression(String::from_utf8_lossy(other).into_owned())),
        }
    }
    /// The name as it appears in `option.compressed`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Text => "text",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Reads `r` to the end into a buffer that never grows past `limit + 1` bytes (one byte
/// over proves the data is too large). Growth doubles from `hint`, with exact
/// reservations so capacity stays within the bound.
fn read_bounded<R: Read>(mut r: R, limit: usize, hint: usize) -> Result<Vec<u8>, ErrorKind> {
    let cap = limit.saturating_add(1);
    let mut out = Vec::new();
    let mut len = 0;
    loop {
        if len == out.len() {
            if len >= cap {
                return Err(ErrorKind::InflateTooLarge { limit: limit as u64 });
            }
            let grow_to = if len == 0 { hint.max(4096) } else { len.saturating_mul(2) }.min(cap);
            out.reserve_exact(grow_to - len);
            out.resize(grow_to, 0);
        }
        match r.read(&mut out[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ErrorKind::Inflate(e.to_string())),
        }
    }
    out.truncate(len);
    Ok(out)
}

/// The largest zstd window accepted for `limit`: frames whose window is larger than
/// needed for `limit` bytes of output are refused before zstd allocates the window (a
/// tiny frame can declare a 2 GiB window). Never below 2^23 (8 MiB), the largest
/// window zstd's standard levels use when streaming without a known size, so every
/// ordinary frame decodes whatever the limit.
fn zstd_window_log_max(limit: usize) -> u32 {
    let need = usize::BITS - limit.saturating_sub(1).leading_zeros();
    need.clamp(23, 30)
}

/// Inflates `data` (gzip or zstd, one or several members/frames) into at most `limit`
/// bytes. Memory: the output (at most `limit + 1` bytes while finding out that it is too
/// large) plus the decoder's state (gzip: about 40 KiB; zstd: its window, at most
/// `max(limit rounded up to a power of two, 8 MiB)`).
pub fn inflate(kind: Compression, data: &[u8], limit: usize) -> Result<Vec<u8>, ErrorKind> {
    // Compressed logs typically inflate 5-10x; start there to avoid regrowth.
    let hint = data.len().saturating_mul(8);
    match kind {
        Compression::Text => {
            if data.len() > limit {
                return Err(ErrorKind::InflateTooLarge { limit: limit as u64 });
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => {
            if data.is_empty() {
                return Ok(Vec::new());
            }
            read_bounded(flate2::bufread::MultiGzDecoder::new(data), limit, hint)
        }
        Compression::Zstd => {
            if data.is_empty() {
                return Ok(Vec::new());
            }
            let inflate_err = |e: std::io::Error| ErrorKind::Inflate(e.to_string());
            let mut dec = zstd::stream::read::Decoder::with_buffer(data).map_err(inflate_err)?;
            dec.window_log_max(zstd_window_log_max(limit)).map_err(inflate_err)?;
            read_bounded(dec, limit, hint)
        }
    }
}

/// Gzip-compresses `data` as one member (what fluentd's out_forward sends per chunk).
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), flate2::Compression::new(level));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Zstd-compresses `data` as one frame.
pub fn zstd_compress(data: &[u8], level: i32) -> Vec<u8> {
    zstd::bulk::compress(data, level).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_members_back_to_back() {
        let mut both = gzip(b"hello ", 6);
        both.extend(gzip(b"world", 6));
        assert_eq!(inflate(Compression::Gzip, &both, 100).unwrap(), b"hello world");
    }

    #[test]
    fn zstd_frames_back_to_back() {
        let mut both = zstd_compress(b"hello ", 3);
        both.extend(zstd_compress(b"world", 3));
        assert_eq!(inflate(Compression::Zstd, &both, 100).unwrap(), b"hello world");
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let g = gzip(&zeros, 9);
        assert!(g.len() < 100_000);
        assert_eq!(inflate(Compression::Gzip, &g, 1 << 20), Err(ErrorKind::InflateTooLarge { limit: 1 << 20 }));
        let z = zstd_compress(&zeros, 3);
        assert_eq!(inflate(Compression::Zstd, &z, 1 << 20), Err(ErrorKind::InflateTooLarge { limit: 1 << 20 }));
    }

    #[test]
    fn output_capacity_never_passes_the_limit() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let g = gzip(&data, 1);
        let out = inflate(Compression::Gzip, &g, 3_000_000).unwrap();
        assert_eq!(out, data);
        assert!(out.capacity() <= 3_000_001, "capacity {}", out.capacity());
        assert_eq!(inflate(Compression::Gzip, &g, 2_999_999), Err(ErrorKind::InflateTooLarge { limit: 2_999_999 }));
    }

    #[test]
    fn zstd_window_follows_the_limit() {
        assert_eq!(zstd_window_log_max(0), 23);
        assert_eq!(zstd_window_log_max(1 << 20), 23);
        assert_eq!(zstd_window_log_max((8 << 20) + 1), 24);
        assert_eq!(zstd_window_log_max(256 << 20), 28);
        assert_eq!(zstd_window_log_max(usize::MAX), 30);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(inflate(Compression::Gzip, b"not gzip", 100), Err(ErrorKind::Inflate(_))));
        assert!(matches!(inflate(Compression::Zstd, b"not zstd", 100), Err(ErrorKind::Inflate(_))));
    }
}
