//! `CookieBackend::private`: `read`/`exists` on arbitrary cookie values, and on arbitrary
//! payloads inside an authentic seal; whatever opens must re-seal and open to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit_cookie::Mode;

fuzz_target!(|data: &[u8]| sessionkit_fuzz::cookie_decode(Mode::Private, data));
