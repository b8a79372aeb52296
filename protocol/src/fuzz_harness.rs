//! What the fuzz targets (`fuzz/`) and the corpus tests (`tests/fuzz_corpus.rs`) run on
//! arbitrary bytes, in one place so both exercise exactly the same code.

use bytes::BytesMut;

use crate::{Frame, FrameDecoder, Limits, RecordRef};

/// Decodes `data` as a Forward stream fed in pieces (the first byte picks the piece
/// size, so every split is reachable), walking every event of every frame and rendering
/// each record as JSON and text. Must never panic; returns the events seen.
pub fn frames(data: &[u8]) -> u64 {
    let Some((&first, body)) = data.split_first() else { return 0 };
    let stride = first as usize % 97 + 1;
    let mut dec =
        FrameDecoder::new(Limits { max_frame_size: 1 << 20, max_inflated_size: 4 << 20, ..Limits::default() });
    let mut buf = BytesMut::new();
    let mut events = 0u64;
    let mut out = Vec::new();
    for piece in body.chunks(stride) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(Frame::Events(b))) => {
                    for ev in b.events() {
                        events += 1;
                        out.clear();
                        ev.record.write_json(&mut out);
                        if let Some(r) = RecordRef::new(ev.record.as_bytes()) {
                            for (k, v) in r.fields().take(64) {
                                v.write_text(&mut out);
                                let _ = k.as_str();
                            }
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return events,
            }
        }
    }
    events
}

/// The files of one cargo-fuzz corpus (`fuzz/corpus/<name>` under the workspace root
/// `root`), in name order, for the corpus tests.
pub fn corpus(root: &std::path::Path, name: &str) -> Vec<Vec<u8>> {
    let dir = root.join("fuzz/corpus").join(name);
    let mut v: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|f| std::fs::read(f.path()).ok().map(|b| (f.path(), b)))
        .collect();
    v.sort();
    v.into_iter().map(|(_, b)| b).collect()
}
