//! `Session` load/commit with arbitrary cookie values and handler operations over the memory
//! and cookie backends (see `sessionkit_fuzz::session` for the input layout).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sessionkit_fuzz::session(data));
