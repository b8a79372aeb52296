//! Replays the cargo-fuzz corpus of the frame decoder (`fuzz/corpus/frame_decoder`, its
//! seeds and what the fuzzer kept) on stable, through the same harness the fuzz target
//! runs, with every split stride for small inputs; then a proptest mutates corpus
//! entries (bit flips, truncations, splices) and runs them too. Nothing may panic.

use std::path::PathBuf;

use proptest::prelude::*;
use spate_protocol::fuzz_harness::frames;

fn corpus() -> Vec<Vec<u8>> {
    spate_protocol::fuzz_harness::corpus(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."), "frame_decoder")
}

#[test]
fn corpus_replays_without_panics() {
    let c = corpus();
    assert!(c.len() >= 10, "the corpus is checked in ({} files)", c.len());
    let mut events = 0u64;
    for data in &c {
        events += frames(data);
        if data.len() <= 2048 && !data.is_empty() {
            let mut d = data.clone();
            for stride in 0..97u8 {
                d[0] = stride;
                frames(&d);
            }
        }
    }
    assert!(events > 0, "the seeds decode to events");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn mutated_corpus_entries_never_panic(
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        splice in any::<bool>(),
    ) {
        let c = corpus();
        let mut d = pick.get(&c).clone();
        if d.is_empty() {
            return Ok(());
        }
        for (i, x) in &flips {
            let n = d.len();
            d[i.index(n)] ^= x;
        }
        if splice {
            let o = other.get(&c);
            d.extend_from_slice(&o[o.len().min(1)..]);
        }
        let n = d.len();
        d.truncate(cut.index(n) + 1);
        frames(&d);
    }
}
