//! Taking over what Ruby fluentd left in its file buffer at the same `path`, when spate
//! replaces fluentd: each `*.b<id>.log`/`*.q<id>.log` with its `.meta` whose data is a
//! msgpack stream of `[time, record]` entries (out_forward's chunk format) becomes a
//! spate chunk file; fluentd's files are removed once the copy is durable.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use spate_protocol::hex;

use super::chunk_file::{header_bytes, segment_header, SUFFIX};

/// Where fluentd's file buffer keeps chunks for a configured `path` (buf_file.rb):
/// `path/buffer.*.log` and `path/worker<N>/buffer.*.log` for a directory, else the
/// pattern itself (`.*` completed with `.log`).
fn fluentd_patterns(path: &Path) -> Vec<String> {
    let s = path.to_string_lossy().to_string();
    if !s.contains(".*") {
        return vec![format!("{s}/buffer.*.log"), format!("{s}/worker*/buffer.*.log"), format!("{s}.*.log")];
    }
    let base = path.file_name().map(|b| b.to_string_lossy().to_string()).unwrap_or_default();
    if base.contains(".*.") {
        vec![s]
    } else if base.ends_with(".*") {
        vec![format!("{s}.log")]
    } else {
        vec![format!("{s}.*.log")]
    }
}

/// Takes over chunks a Ruby fluentd left in its file buffer at the same `path` (when
/// spate replaces fluentd), so events fluentd acked are not stranded: each
/// `*.b<id>.log`/`*.q<id>.log` with its `.meta` whose data is a msgpack stream of
/// `[time, record]` entries (out_forward's chunk format) becomes a spate chunk; the
/// fluentd files are removed once the copy is durable. Chunks in other formats (an
/// out_file buffer holds formatted text) are left in place with a warning.
pub fn import_fluentd(path: &Path, into: &Path) {
    let mut files = Vec::new();
    for pat in fluentd_patterns(path) {
        if let Ok(g) = glob::glob(&pat) {
            files.extend(g.flatten().filter(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                !n.ends_with(".meta") && fluentd_chunk_id(&n).is_some()
            }));
        }
    }
    files.sort();
    files.dedup();
    let (mut chunks, mut events) = (0u64, 0u64);
    for p in files {
        match import_one(&p, into) {
            Ok(n) => {
                chunks += 1;
                events += n as u64;
            }
            Err(why) => crate::warn!("file buffer: fluentd chunk {} not taken over: {why}; left in place", p.display()),
        }
    }
    if chunks > 0 {
        crate::info!(
            "file buffer: took over {chunks} chunks ({events} events) that fluentd left under {}",
            path.display()
        );
    }
}

/// The unique id in a fluentd chunk file name (`.b<hex>.` / `.q<hex>.`).
fn fluentd_chunk_id(name: &str) -> Option<Vec<u8>> {
    for part in name.split('.') {
        let Some(hexpart) = part.strip_prefix('b').or_else(|| part.strip_prefix('q')) else { continue };
        if hexpart.len() >= 16 && hexpart.len() % 2 == 0 && hexpart.bytes().all(|c| c.is_ascii_hexdigit()) {
            return (0..hexpart.len()).step_by(2).map(|i| u8::from_str_radix(&hexpart[i..i + 2], 16).ok()).collect();
        }
    }
    None
}

fn import_one(p: &Path, into: &Path) -> Result<u32, String> {
    let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let fid = fluentd_chunk_id(&name).ok_or("no chunk id in the name")?;
    let meta_path = PathBuf::from(format!("{}.meta", p.display()));
    let meta = std::fs::read(&meta_path).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    // fluentd >= 1.4: "\xc1\x00" + u32 BE size + msgpack map; older: the map alone.
    let map = if meta.len() > 6 && meta[..2] == [0xc1, 0x00] {
        let n = u32::from_be_bytes([meta[2], meta[3], meta[4], meta[5]]) as usize;
        meta.get(6..6 + n).ok_or("truncated .meta")?
    } else {
        &meta[..]
    };
    let rec = spate_protocol::RecordRef::new(map).ok_or("the .meta is not a msgpack map")?;
    let tag = rec.get(b"tag").and_then(|v| v.as_str()).ok_or("the .meta has no tag (tag is not a chunk key)")?;
    let timekey = rec.get(b"timekey").and_then(|v| v.as_i64());
    let mut data = std::fs::read(p).map_err(|e| e.to_string())?;
    if data.starts_with(&[0x1f, 0x8b]) {
        data = spate_protocol::compress::inflate(spate_protocol::Compression::Gzip, &data, 4 << 30)
            .map_err(|e| format!("gzip: {e}"))?;
    }
    let batch = spate_protocol::EventBatch::from_entries(
        Bytes::new(),
        Bytes::from(data),
        spate_protocol::EntriesFormat::Packed,
        spate_protocol::Mode::PackedForward,
        spate_protocol::Options::default(),
        100,
    )
    .map_err(|e| format!("not a stream of [time, record] entries: {e}"))?;
    if batch.invalid > 0 {
        return Err(format!("{} entries are not [time, record]", batch.invalid));
    }
    let mut id = [0u8; 16];
    // Keep fluentd's order: its ids start with the creation time too.
    for (d, s) in id.iter_mut().zip(fid.iter()) {
        *d = *s;
    }
    let mut out = header_bytes(&id, tag, timekey, &[]);
    out.extend_from_slice(&segment_header(&batch.entries, batch.count));
    out.extend_from_slice(&batch.entries);
    let dst = into.join(format!("{}{SUFFIX}", hex(&id)));
    let tmp = into.join(format!("{}.import", hex(&id)));
    (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dst)?;
        File::open(into)?.sync_all()
    })()
    .map_err(|e| format!("copying into {}: {e}", into.display()))?;
    let _ = std::fs::remove_file(p);
    let _ = std::fs::remove_file(&meta_path);
    Ok(batch.count)
}
