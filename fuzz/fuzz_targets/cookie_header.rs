//! The middleware's `Cookie` header scan, through the public layer: one request whose `Cookie`
//! header is the input, over a memory backend; never a panic or a 5xx, and no id the client
//! made up is adopted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sessionkit_fuzz::cookie_header(data));
