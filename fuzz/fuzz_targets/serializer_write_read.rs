//! Arbitrary nested values written by each serializer and read back: whatever is written
//! reads back the same, and what is refused on write is exactly what could not be read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sessionkit_fuzz::serializer_write_read(data));
