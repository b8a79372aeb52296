//! fluent.conf parsing and validation on arbitrary text.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spate_engine::fuzz_harness::config(data);
});
