//! An Established session fed arbitrary peer bytes, split at fuzzer-chosen positions and
//! interleaved with timer ticks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    brindle_bgp_fuzz::fuzz_session(data);
});
