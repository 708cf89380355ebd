//! Fuzz target `contract`: see `fuzz/src/bodies.rs` for what it checks.
#![no_main]

#[path = "../src/bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::contract(data));
