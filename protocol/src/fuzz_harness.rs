//! What the fuzz targets (`fuzz/`) and the corpus tests (`tests/fuzz_corpus.rs`) run on
//! arbitrary bytes, in one place so both exercise exactly the same code.

use bytes::BytesMut;

use crate::{Decoded, Frame, FrameDecoder, Limits, RecordRef, Scan};

fn limits() -> Limits {
    Limits { max_frame_size: 1 << 20, max_inflated_size: 4 << 20, ..Limits::default() }
}

/// Decodes `data` as a Forward stream fed in pieces (the first byte picks the piece
/// size, so every split is reachable), walking every event of every frame and rendering
/// each record as JSON and text. Must never panic; returns the events seen.
pub fn frames(data: &[u8]) -> u64 {
    let Some((&first, body)) = data.split_first() else { return 0 };
    let stride = first as usize % 97 + 1;
    let mut dec = FrameDecoder::new(limits());
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
                Err(_) => return checked(events, body, stride),
            }
        }
    }
    checked(events, body, stride)
}

/// Asserts that the server's path (`scan`, frames read in place, `parse_scanned`)
/// finds as many valid events in `body` fed in pieces of `stride` as `decode` did.
fn checked(events: u64, body: &[u8], stride: usize) -> u64 {
    let mut dec = FrameDecoder::new(limits());
    let mut buf = BytesMut::new();
    let mut scanned = 0u64;
    'feed: for piece in body.chunks(stride) {
        buf.extend_from_slice(piece);
        loop {
            let r = match dec.scan(&buf) {
                Ok(Scan::Message { valid, len, .. }) => {
                    scanned += valid as u64;
                    let _ = buf.split_to(len);
                    continue;
                }
                Ok(Scan::Other { len }) => {
                    let raw = buf.split_to(len).freeze();
                    match dec.parse_scanned(raw.clone()) {
                        // Left compressed: inflated whole, as decode does.
                        Ok(Decoded::Compressed(_)) => crate::parse_frame(raw, &limits()),
                        Ok(Decoded::Frame(f)) => Ok(f),
                        Err(e) => Err(e),
                    }
                }
                Ok(Scan::Partial) => break,
                Ok(Scan::Json) => match dec.decode(&mut buf) {
                    Ok(Some(f)) => Ok(f),
                    Ok(None) => break,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match r {
                Ok(Frame::Events(b)) => scanned += b.events().count() as u64,
                Ok(Frame::Heartbeat) => {}
                Err(_) => break 'feed,
            }
        }
    }
    assert_eq!(scanned, events, "scan and decode disagree");
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
