//! Fuzz target: see `ibconn_core::fuzzing::frame_decoder` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ibconn_core::fuzzing::frame_decoder(data));
