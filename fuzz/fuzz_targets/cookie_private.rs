//! `CookieBackend::private`: `read`/`exists` on arbitrary cookie values, and on arbitrary
//! payloads inside an authentic seal; whatever opens must re-seal and open to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessions_cookie::Mode;

fuzz_target!(|data: &[u8]| sessions_fuzz::cookie_decode(Mode::Private, data));
