//! The shared-key handshake (server PING check, client HELO/PONG) on arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spate_engine::fuzz_harness::handshake(data);
});
