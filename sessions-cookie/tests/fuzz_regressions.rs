//! Bugs the fuzz targets in `fuzz/` found (`scripts/fuzz`), one test each, named for the bug.

use sessionkit_cookie::CookieBackend;
use sessionkit_core::{SessionBackend, SessionData, Values};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

/// `fuzz/` targets `cookie_signed` and `cookie_private`: a sealed payload whose values hold
/// `98446744074709551615` opens as 9.844674407470955e19, and re-sealing and opening that gives
/// 9.844674407470957e19. The values travel as JSON text, and serde_json parses floats without
/// its `float_roundtrip` feature: a float a handler stored can come back changed in its last
/// bits (the root cause of sessionkit-core's `json_serializer_float_drifts_through_a_round_trip`).
#[tokio::test]
async fn cookie_float_drifts_through_a_round_trip() {
    let mut values = Values::new();
    values.insert("f".into(), serde_json::json!(9.844674407470955e19_f64));
    let now = sessionkit_core::Clock::system().unix_secs();
    let data = SessionData::from_parts(values, now - 100, now);
    for backend in [
        CookieBackend::signed(SECRET).unwrap(),
        CookieBackend::private(SECRET).unwrap(),
    ] {
        let value = backend.create(&data, None).await.unwrap();
        let read = backend.read(&value).await.unwrap().unwrap();
        assert_eq!(read, data, "{:?}: the stored float changed", backend.mode());
    }
}
