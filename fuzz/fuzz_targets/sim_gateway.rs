//! Fuzz target: see `ibconn_sim::fuzzing::gateway` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ibconn_sim::fuzzing::gateway(data));
