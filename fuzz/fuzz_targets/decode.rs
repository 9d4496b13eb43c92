//! BGP message decoder: framing, every message type's body parser, RFC 7606 handling,
//! and the encode → decode round trip of every UPDATE it accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    brindle_bgp_fuzz::fuzz_decode(data);
});
