//! The Forward frame decoder on arbitrary bytes, split at every stride.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spate_protocol::fuzz_harness::frames(data);
});
