//! `store_as`: how a formatted chunk becomes an object body, with fluent-plugin-s3's
//! extensions and content types: `gzip` (default; one gzip member per object, `.gz`,
//! `application/x-gzip`), `json` (`.json`, `application/json`), `text` (`.txt`,
//! `text/plain`) and `zstd` (`.zst`, `application/x-zst`, `<compress> level`, default 3,
//! as fluent-plugin-s3's zstd compressor). `gzip_command` writes the same gzip format, so
//! it is taken as `gzip`.

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAs {
    Gzip,
    Json,
    Text,
    Zstd { level: i32 },
}

pub const STORE_AS: &[&str] = &["gzip", "json", "text", "zstd", "gzip_command"];

impl StoreAs {
    pub fn parse(s: &str, zstd_level: i32) -> Result<StoreAs, String> {
        Ok(match s {
            "gzip" | "gzip_command" => StoreAs::Gzip,
            "json" => StoreAs::Json,
            "text" => StoreAs::Text,
            "zstd" => StoreAs::Zstd { level: zstd_level },
            o => return Err(format!("store_as {o:?} is not supported; supported: {}", STORE_AS.join(", "))),
        })
    }

    pub fn ext(&self) -> &'static str {
        match self {
            StoreAs::Gzip => "gz",
            StoreAs::Json => "json",
            StoreAs::Text => "txt",
            StoreAs::Zstd { .. } => "zst",
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            StoreAs::Gzip => "application/x-gzip",
            StoreAs::Json => "application/json",
            StoreAs::Text => "text/plain",
            StoreAs::Zstd { .. } => "application/x-zst",
        }
    }

    /// The object body for a formatted chunk (CPU work: run it off the shard).
    pub fn encode(&self, formatted: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            StoreAs::Gzip => {
                let mut w = flate2::write::GzEncoder::new(
                    Vec::with_capacity(formatted.len() / 4 + 64),
                    flate2::Compression::default(),
                );
                w.write_all(&formatted)?;
                w.finish()
            }
            StoreAs::Json | StoreAs::Text => Ok(formatted),
            StoreAs::Zstd { level } => zstd::bulk::compress(&formatted, *level),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips() {
        let text = b"2026-11-25T03:00:00+00:00\tapp\t{\"a\":1}\n".repeat(100);
        let gz = StoreAs::Gzip.encode(text.clone()).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, text);
        let z = StoreAs::Zstd { level: 3 }.encode(text.clone()).unwrap();
        assert_eq!(zstd::bulk::decompress(&z, 1 << 20).unwrap(), text);
        assert_eq!(StoreAs::Text.encode(text.clone()).unwrap(), text);
        assert_eq!(StoreAs::parse("gzip_command", 3).unwrap().ext(), "gz");
        assert!(StoreAs::parse("lzo", 3).unwrap_err().contains("supported: gzip, json"));
    }
}
