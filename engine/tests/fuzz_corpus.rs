//! Replays the cargo-fuzz corpora of the config parser and the shared-key handshake
//! (`fuzz/corpus/{config_parser,handshake}`) on stable through the fuzz targets' own
//! harness, plus fluentd's example configs in place and proptest mutations of corpus
//! entries. Nothing may panic.

use std::path::PathBuf;

use proptest::prelude::*;
use spate_engine::fuzz_harness::{config, handshake};

fn corpus(name: &str) -> Vec<Vec<u8>> {
    spate_protocol::fuzz_harness::corpus(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."), name)
}

#[test]
fn config_corpus_and_fluentd_examples_replay() {
    let c = corpus("config_parser");
    assert!(c.len() >= 10, "{} files", c.len());
    for d in &c {
        config(d);
    }
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/fluentd-examples");
    if let Ok(rd) = std::fs::read_dir(&fixtures) {
        for f in rd.flatten() {
            config(&std::fs::read(f.path()).unwrap());
        }
    } else {
        println!("fluentd example configs not found at {}; corpus only", fixtures.display());
    }
}

#[test]
fn handshake_corpus_replays() {
    let c = corpus("handshake");
    assert!(c.len() >= 4, "{} files", c.len());
    for d in &c {
        handshake(d);
        // Each input on each side.
        let mut x = d.clone();
        for side in 0..3u8 {
            if let Some(b) = x.first_mut() {
                *b = side;
            }
            handshake(&x);
        }
    }
}

fn mutate(
    c: &[Vec<u8>],
    pick: &prop::sample::Index,
    flips: &[(prop::sample::Index, u8)],
    cut: &prop::sample::Index,
) -> Vec<u8> {
    let mut d = pick.get(c).clone();
    if d.is_empty() {
        return d;
    }
    for (i, x) in flips {
        let n = d.len();
        d[i.index(n)] ^= x;
    }
    let n = d.len();
    d.truncate(cut.index(n) + 1);
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn mutated_configs_and_handshakes_never_panic(
        pick in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        config(&mutate(&corpus("config_parser"), &pick, &flips, &cut));
        handshake(&mutate(&corpus("handshake"), &pick, &flips, &cut));
    }
}
