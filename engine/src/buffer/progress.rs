//! How much of a chunk the destination already acknowledged, when an output sends a
//! chunk as several acked frames (out_forward with `require_ack_response`).
//!
//! The progress lives in the chunk ([`super::Chunk::acked`]), so a retry resumes after
//! the last acked frame instead of resending the whole chunk. For a file-buffer chunk it
//! is also written to a side file `<id>.acked` next to the chunk file, overwritten in
//! place after every ack, so a restarted spate (after `kill -9`) resends only the
//! unacknowledged part:
//!
//! ```text
//! "ACK1" | bytes u64 LE | events u32 LE | crc32 u32 LE (of all before)
//! ```
//!
//! The write goes to the page cache (which outlives the process) without an fsync of
//! its own; after a power loss a stale or torn record (bad checksum) only means that
//! more of the chunk is resent: progress only ever names bytes the destination acked,
//! so it can never skip an unacknowledged event.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"ACK1";
const LEN: usize = 20;

/// Bytes (of the chunk's entries) and events acknowledged so far, from the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub bytes: usize,
    pub events: u32,
}

/// The side file of the chunk file at `chunk`.
pub fn side_path(chunk: &Path) -> PathBuf {
    chunk.with_extension("acked")
}

fn encode(p: Progress) -> [u8; LEN] {
    let mut r = [0u8; LEN];
    r[..4].copy_from_slice(MAGIC);
    r[4..12].copy_from_slice(&(p.bytes as u64).to_le_bytes());
    r[12..16].copy_from_slice(&p.events.to_le_bytes());
    let crc = crc32fast::hash(&r[..16]);
    r[16..].copy_from_slice(&crc.to_le_bytes());
    r
}

fn decode(r: &[u8]) -> Option<Progress> {
    if r.len() != LEN || &r[..4] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(r[16..20].try_into().ok()?);
    if crc32fast::hash(&r[..16]) != crc {
        return None;
    }
    let bytes = usize::try_from(u64::from_le_bytes(r[4..12].try_into().ok()?)).ok()?;
    let events = u32::from_le_bytes(r[12..16].try_into().ok()?);
    Some(Progress { bytes, events })
}

/// Records `p` for the chunk file at `chunk`.
pub fn write(chunk: &Path, p: Progress) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(side_path(chunk))?;
    f.write_all_at(&encode(p), 0)
}

/// The progress recorded for the chunk file at `chunk` (none: nothing acked), if it is
/// within the chunk's `size` bytes and `count` events (else it is ignored, logged).
pub fn read(chunk: &Path, size: usize, count: u32) -> Progress {
    let side = side_path(chunk);
    let Ok(raw) = std::fs::read(&side) else { return Progress::default() };
    match decode(&raw) {
        Some(p) if p.bytes <= size && p.events <= count => p,
        _ => {
            crate::warn!(
                "file buffer: delivery progress {} is unreadable or past the chunk's end; the whole chunk will be sent",
                side.display()
            );
            Progress::default()
        }
    }
}

/// Deletes the side file, if any.
pub fn remove(chunk: &Path) {
    let _ = std::fs::remove_file(side_path(chunk));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = std::env::temp_dir().join(format!("spate-progress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chunk = dir.join("0011.chunk");
        assert_eq!(read(&chunk, 100, 10), Progress::default());
        write(&chunk, Progress { bytes: 10, events: 2 }).unwrap();
        write(&chunk, Progress { bytes: 60, events: 7 }).unwrap();
        assert_eq!(read(&chunk, 100, 10), Progress { bytes: 60, events: 7 });
        // Past the chunk's end (a chunk cut by recovery): ignored.
        assert_eq!(read(&chunk, 50, 10), Progress::default());
        let mut raw = std::fs::read(side_path(&chunk)).unwrap();
        raw[5] ^= 1;
        std::fs::write(side_path(&chunk), &raw).unwrap();
        assert_eq!(read(&chunk, 100, 10), Progress::default());
        remove(&chunk);
        assert!(!side_path(&chunk).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
