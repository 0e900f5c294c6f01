//! What the fuzz targets in `fuzz_targets/` share: a tiny executor, fixed keys, a forger that
//! seals arbitrary payloads the way `sessionkit-cookie` does, a memory backend with a known
//! record and deterministic ids, the checks each target runs, and the seed corpus.
//!
//! Run the targets with `scripts/fuzz` at the workspace root. The seeds under `corpus/` are
//! written by this crate's test: `SESSIONS_FUZZ_WRITE_SEEDS=1 cargo test --lib` (here, in
//! `fuzz/`); without the variable the test checks that the committed seeds still open.

use aes_gcm::aead::{Aead, KeyInit, Payload as Sealed};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::Key;
use hmac::{Hmac, Mac};
use http::header::{COOKIE, SET_COOKIE, VARY};
use http::{HeaderValue, Request, Response, StatusCode};
use sessionkit_cookie::{CookieBackend, DEFAULT_COOKIE_NAME, MAX_COOKIE_BYTES, Mode};
use sessionkit_core::adapter::{self, Commit, Context as SessionContext, Policy, Shared};
use sessionkit_core::{
    Changes, Error, IdGenerator, LazySession, Serializer, SessionBackend, SessionData, Values,
};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::SessionLayer;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer as _, ServiceExt as _};

/// The fuzzing key: fixed (so seeds stay valid across runs) and public (never use it for real).
pub const SECRET: &[u8] = b"sessions fuzzing secret: fixed, public, never used for real";
/// A rotated-out key the fuzz backends still accept, so both key ids are live.
pub const OLD_SECRET: &[u8] = b"an older fuzzing secret, still accepted during rotation";

/// The id of the record every fuzz memory backend starts with (32 URL-safe characters).
pub const KNOWN_ID: &str = "fuzzKnownSessionId00000000000000";
/// Every id a fuzz memory backend mints after [`KNOWN_ID`] starts with this.
pub const MINTED_PREFIX: &str = "minted";
/// The counter the known record holds under `n`.
pub const KNOWN_N: u64 = 41;

/// A long lifetime for the seed cookies, so they still open years from now.
const SEED_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Run `future` to completion on this thread. The memory and cookie backends and the layer never
/// wait on anything outside the future, so it completes on the first polls; one that stays
/// pending is a bug in itself (a lost wake-up would hang a real server).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("a future stayed pending although nothing it awaits can be pending");
}

/// The cookie backend of `mode` under [`SECRET`], also opening [`OLD_SECRET`]'s cookies.
pub fn cookie_backend(mode: Mode) -> &'static CookieBackend {
    static SIGNED: OnceLock<CookieBackend> = OnceLock::new();
    static PRIVATE: OnceLock<CookieBackend> = OnceLock::new();
    let cell = match mode {
        Mode::Signed => &SIGNED,
        Mode::Private => &PRIVATE,
    };
    cell.get_or_init(|| {
        // No absolute limit: the payloads carry fixed creation times from 2023, so that the
        // seeds stay the same from one run to the next.
        CookieBackend::builder(mode, SECRET)
            .with_old_key(OLD_SECRET)
            .with_max_lifetime(None)
            .build()
            .expect("the fuzzing secrets are long enough")
    })
}

/// Seals arbitrary payloads with a key exactly as `sessionkit-cookie` does, so a target can reach
/// what the backend does with a payload once its seal checks out. The format, as the backend
/// writes it: `<key id>.<base64url payload>.<base64url HMAC-SHA256 of the cookie name, NUL, and
/// what precedes>` (signed) or `<key id>.<base64url nonce ‖ AES-256-GCM(payload, aad = key id,
/// NUL, cookie name)>` (private), the cookie name being the backend's default, where the
/// payload is the header (bincode 2, standard configuration: the format byte 1, then issued and
/// deadline in Unix ms, created and last access in Unix s as varints, then the session's own
/// lifetime and user as `Option`s) and the values as a JSON object. [`forger`] checks this
/// against the backend.
#[derive(Debug)]
pub struct Forger {
    mode: Mode,
    id: String,
    key: Key,
}

impl Forger {
    /// A forger for `mode` holding the key derived from `secret`.
    pub fn new(mode: Mode, secret: &[u8]) -> Self {
        let key = Key::derive_from(secret);
        let label: &[u8] = match mode {
            Mode::Signed => b"sessionkit-cookie v1 signed key id\0",
            Mode::Private => b"sessionkit-cookie v1 private key id\0",
        };
        let digest = Sha256::new()
            .chain_update(label)
            .chain_update(key.master())
            .finalize();
        Forger {
            mode,
            id: URL_SAFE_NO_PAD.encode(&digest[..6]),
            key,
        }
    }

    /// `payload` sealed as the backend seals it.
    pub fn seal_payload(&self, payload: &[u8]) -> String {
        match self.mode {
            Mode::Signed => self.sign(&URL_SAFE_NO_PAD.encode(payload)),
            Mode::Private => {
                // A fixed nonce: fine for a fuzzer, and keeps each input deterministic.
                let nonce = [7u8; 12];
                let aead = Aes256Gcm::new_from_slice(self.key.encryption())
                    .expect("a 32-byte encryption key");
                let sealed = aead
                    .encrypt(
                        Nonce::from_slice(&nonce),
                        Sealed {
                            msg: payload,
                            aad: format!("{}\0{DEFAULT_COOKIE_NAME}", self.id).as_bytes(),
                        },
                    )
                    .expect("AES-GCM seals any length we feed it");
                let mut raw = nonce.to_vec();
                raw.extend_from_slice(&sealed);
                format!("{}.{}", self.id, URL_SAFE_NO_PAD.encode(raw))
            }
        }
    }

    /// Signed mode: `<key id>.<body>.<MAC>` for any `body`, base64 or not (an authentic value
    /// whose inside is not what the backend writes).
    pub fn sign(&self, body: &str) -> String {
        let mut value = format!("{}.{body}", self.id);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.signing())
            .expect("HMAC takes any key length");
        mac.update(DEFAULT_COOKIE_NAME.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        value.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut value);
        value
    }
}

/// The forger for `mode` under [`SECRET`], checked once against the backend: if the backend's
/// format moves on, the targets fail at once instead of fuzzing nothing.
pub fn forger(mode: Mode) -> &'static Forger {
    static SIGNED: OnceLock<Forger> = OnceLock::new();
    static PRIVATE: OnceLock<Forger> = OnceLock::new();
    let cell = match mode {
        Mode::Signed => &SIGNED,
        Mode::Private => &PRIVATE,
    };
    cell.get_or_init(|| {
        let forger = Forger::new(mode, SECRET);
        let value = forger.seal_payload(&valid_payload());
        let read = block_on(cookie_backend(mode).read(&value)).expect("cookie reads never fail");
        assert!(
            read.is_some(),
            "the fuzz forger no longer seals like sessionkit-cookie ({mode:?}): update fuzz/src/lib.rs"
        );
        forger
    })
}

/// A payload as the backend seals it: the header (format 1; issued, deadline, created, last
/// access) and the values as JSON. Written out by hand here, so that the forger's check also
/// checks the backend's layout.
pub fn payload(deadline_ms: u64, json: &str) -> Vec<u8> {
    let mut payload = vec![1];
    for n in [1_700_000_000_000, deadline_ms, 1_700_000_000, 1_700_000_100] {
        put_varint(&mut payload, n);
    }
    // No lifetime of the session's own, no user: two `None`s.
    payload.extend_from_slice(&[0, 0]);
    payload.extend_from_slice(json.as_bytes());
    payload
}

/// `n` as bincode's standard configuration writes a `u64`: one byte below 251, else a marker
/// byte (251, 252, 253) and the number as a little-endian `u16`, `u32` or `u64`.
fn put_varint(out: &mut Vec<u8>, n: u64) {
    if n < 251 {
        out.push(n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(251);
        out.extend_from_slice(&n.to_le_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(252);
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// An authentic-looking payload, unexpired for ever.
fn valid_payload() -> Vec<u8> {
    payload(
        u64::MAX,
        r#"{"n":1,"user":"fuzz","f":0.5,"l":[true,null,{"x":-3}]}"#,
    )
}

/// The values of the known record.
pub fn known_values() -> Values {
    let mut values = Values::new();
    values.insert("n".into(), KNOWN_N.into());
    values.insert("user".into(), "fuzz".into());
    values
}

/// A memory backend holding `record` under [`KNOWN_ID`]; it mints `minted…` ids after that.
pub fn memory_with_known(record: &SessionData) -> InMemoryBackend {
    let next = AtomicU64::new(0);
    let ids: IdGenerator = Arc::new(move || match next.fetch_add(1, Ordering::Relaxed) {
        0 => KNOWN_ID.to_owned(),
        n => format!("{MINTED_PREFIX}{n:026}"),
    });
    let backend = InMemoryBackend::new().with_id_generator(ids);
    let id = block_on(backend.create(record, None)).expect("memory writes never fail");
    assert_eq!(id, KNOWN_ID);
    backend
}

// --- cookie decoding -------------------------------------------------------------------------

/// Fuzz `CookieBackend::read`/`exists` in `mode` with `data` twice: as the cookie value a client
/// sends, and as the plaintext inside an authentic seal (what the backend parses once the seal
/// checks out).
pub fn cookie_decode(mode: Mode, data: &[u8]) {
    let backend = cookie_backend(mode);
    if let Ok(value) = std::str::from_utf8(data) {
        check_cookie_value(backend, value);
    }
    let forger = forger(mode);
    check_cookie_value(backend, &forger.seal_payload(data));
    if mode == Mode::Signed {
        // Authentic, but not base64 inside.
        if let Ok(text) = std::str::from_utf8(data) {
            check_cookie_value(backend, &forger.sign(text));
        }
    }
}

/// Whether `value` can travel in a cookie as the layer sends it: at most
/// [`MAX_COOKIE_BYTES`], RFC 6265 cookie octets only.
fn cookie_safe(value: &str) -> bool {
    value.len() <= MAX_COOKIE_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

fn check_cookie_value(backend: &CookieBackend, value: &str) {
    let read = block_on(backend.read(value)).expect("a cookie read never fails");
    let Some(record) = read else {
        return;
    };
    assert!(
        cookie_safe(value),
        "a value that opens could not travel in a cookie"
    );
    // An authentic value can be saved again (the layer's write path for a loaded session).
    match block_on(backend.apply(value, &record, &Changes::default(), None)) {
        Ok(Some(updated)) => assert!(cookie_safe(&updated), "an issued value is not cookie-safe"),
        Ok(None) => assert!(record.is_empty(), "a session with values was removed"),
        Err(Error::CookieTooLarge { .. }) => {}
        Err(error) => panic!("saving an authentic cookie failed: {error}"),
    }
    // Whatever decodes re-seals and opens to the same record.
    match block_on(backend.create(&record, Some(Duration::from_secs(3600)))) {
        Ok(resealed) => {
            assert!(cookie_safe(&resealed), "an issued value is not cookie-safe");
            let reread = block_on(backend.read(&resealed))
                .expect("a cookie read never fails")
                .expect("a value just sealed opens");
            assert!(
                same_record(&reread, &record),
                "the record changed through a re-seal\n  opened: {record:?}\nre-opened: {reread:?}"
            );
        }
        Err(Error::CookieTooLarge { .. }) => {}
        Err(error) => panic!("re-sealing a decoded record failed: {error}"),
    }
}

// --- comparing records -----------------------------------------------------------------------

/// Known bugs the checks let pass, so a run can look past them for new ones:
/// `SESSIONS_FUZZ_KNOWN_BUGS=float-drift` accepts a float that changes in its last bits through
/// JSON text (serde_json parses without `float_roundtrip`). Unset: every check is exact.
fn tolerate(bug: &str) -> bool {
    static KNOWN: OnceLock<String> = OnceLock::new();
    KNOWN
        .get_or_init(|| std::env::var("SESSIONS_FUZZ_KNOWN_BUGS").unwrap_or_default())
        .split(',')
        .any(|known| known.trim() == bug)
}

// --- write, then read -------------------------------------------------------------------

/// Values built from arbitrary bytes by a small stack machine, so that the fuzzer reaches any
/// shape: each byte's low three bits are an operation (0 null, 1 a boolean, 2 a `u64` and 3 an
/// `i64` from the next 8 bytes, 4 an `f64` from the next 8 bytes when finite, 5 a string of
/// the next byte's count of bytes, 6 an array of the top `n` items and 7 an object of them,
/// `n` being the byte's upper bits); what is left on the stack becomes the session's values.
pub fn values_from(mut data: &[u8]) -> Values {
    use serde_json::Value;
    let mut stack: Vec<Value> = Vec::new();
    let take = |data: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let taken = data.get(..n)?.to_vec();
        *data = &data[n..];
        Some(taken)
    };
    while let Some((&op, rest)) = data.split_first() {
        data = rest;
        let n = usize::from(op >> 3);
        let word = |bytes: Vec<u8>| u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8]));
        match op & 7 {
            0 => stack.push(Value::Null),
            1 => stack.push(Value::Bool(n % 2 == 1)),
            2 => stack.extend(take(&mut data, 8).map(|b| Value::from(word(b)))),
            3 => stack.extend(take(&mut data, 8).map(|b| Value::from(word(b) as i64))),
            4 => {
                if let Some(f) = take(&mut data, 8).map(|b| f64::from_bits(word(b))) {
                    stack.extend(serde_json::Number::from_f64(f).map(Value::Number));
                }
            }
            5 => {
                let len = take(&mut data, 1).map_or(0, |b| usize::from(b[0]));
                let len = len.min(data.len());
                let text = take(&mut data, len).unwrap_or_default();
                stack.push(Value::String(String::from_utf8_lossy(&text).into_owned()));
            }
            6 => {
                let items = stack.split_off(stack.len().saturating_sub(n));
                stack.push(Value::Array(items));
            }
            _ => {
                let items = stack.split_off(stack.len().saturating_sub(n));
                let map = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("k{i}"), v))
                    .collect();
                stack.push(Value::Object(map));
            }
        }
    }
    stack
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("v{i}"), v))
        .collect()
}

/// How deeply arrays and objects nest in `values` (`[[1]]` is 2), without recursion.
pub fn depth(values: &Values) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = values.values().map(|v| (v, 0)).collect();
    while let Some((value, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
        if let Value::Array(_) | Value::Object(_) = value {
            deepest = deepest.max(depth + 1);
        }
    }
    deepest
}

/// Every record built from `data` that a serializer writes, it reads back the same; what it
/// refuses to write (as [`Error::Serialization`]) is exactly what nests deeper than it reads.
pub fn serializer_write_read(data: &[u8]) {
    let values = values_from(data);
    let depth = depth(&values);
    let record = SessionData::from_parts(values, 1_700_000_000, 1_700_000_001);
    let serializers: [(&dyn Serializer, usize); 2] = [
        (
            &sessionkit_core::JsonSerializer,
            sessionkit_core::JsonSerializer::MAX_DEPTH,
        ),
        (
            &sessionkit_core::BincodeSerializer,
            sessionkit_core::BincodeSerializer::MAX_DEPTH - 1,
        ),
    ];
    for (serializer, max) in serializers {
        match serializer.serialize(&record) {
            Ok(bytes) => {
                assert!(
                    depth <= max,
                    "a record {depth} deep was written (limit {max})"
                );
                let read = serializer
                    .deserialize(&bytes)
                    .expect("a record that was written reads back");
                assert!(
                    same_record(&read, &record),
                    "the record changed through a write and a read
 written: {record:?}
    read: {read:?}"
                );
            }
            Err(Error::Serialization {
                action: "encoded", ..
            }) => {
                assert!(
                    depth > max,
                    "a record {depth} deep was refused (limit {max})"
                )
            }
            Err(other) => panic!("writing failed with {other}"),
        }
    }
}

/// Whether two records are the same (up to the known bugs being tolerated).
pub fn same_record(a: &SessionData, b: &SessionData) -> bool {
    a == b
        || (tolerate("float-drift")
            && a.created_unix() == b.created_unix()
            && a.last_access_unix() == b.last_access_unix()
            && same_map(a.values(), b.values()))
}

fn same_map(a: &Values, b: &Values) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= x.abs().max(y.abs()) * 8.0 * f64::EPSILON,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => same_map(x, y),
        _ => a == b,
    }
}

// --- serializers -----------------------------------------------------------------------------

/// Decode `data` with `serializer`; whatever decodes must re-encode, decode to the same record,
/// and encode to the same bytes again. Returns the decoded record.
pub fn serializer_round_trip<S: Serializer>(serializer: &S, data: &[u8]) -> Option<SessionData> {
    let record = serializer.deserialize(data).ok()?;
    let bytes = serializer
        .serialize(&record)
        .expect("a decoded record re-encodes");
    let again = serializer
        .deserialize(&bytes)
        .expect("a re-encoded record decodes");
    if again != record {
        assert!(
            same_record(&again, &record),
            "the record changed through a round trip\n  decoded: {record:?}\nre-decoded: {again:?}"
        );
        return Some(record);
    }
    let bytes_again = serializer
        .serialize(&again)
        .expect("a decoded record re-encodes");
    assert_eq!(bytes_again, bytes, "encoding is not stable");
    Some(record)
}

// --- cookie header parsing -------------------------------------------------------------------

/// The handler behind the layer: a counter under `n`; a session error answers 500 with it.
async fn count(request: Request<()>) -> Result<Response<String>, Infallible> {
    let result = async {
        let lazy = request
            .extensions()
            .get::<LazySession>()
            .cloned()
            .ok_or(Error::MissingLayer)?;
        let session = lazy.load().await?;
        let n: u64 = session.get("n")?.unwrap_or(0) + 1;
        session.insert("n", n)?;
        Ok::<_, Error>(n.to_string())
    }
    .await;
    Ok(match result {
        Ok(body) => Response::new(body),
        Err(error) => {
            let mut response = Response::new(format!("session error: {error}"));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    })
}

/// Send one request whose `Cookie` header is `data` through `SessionLayer` over a memory
/// backend holding [`KNOWN_ID`], with and without autoload: never a panic or a 5xx, the known
/// session is only found when the header names it, and no id from the header is adopted.
pub fn cookie_header(data: &[u8]) {
    let Ok(header) = HeaderValue::from_bytes(data) else {
        return;
    };
    for autoload in [false, true] {
        let backend = memory_with_known(&SessionData::new(known_values()));
        let service = SessionLayer::builder(backend)
            .with_autoload(autoload)
            .build()
            .unwrap()
            .layer(tower::service_fn(count));
        let request = Request::get("/")
            .header(COOKIE, header.clone())
            .body(())
            .expect("a valid request");
        let response = block_on(service.oneshot(request)).unwrap_or_else(|never| match never {});
        assert!(
            !response.status().is_server_error(),
            "{} (autoload {autoload}): {}",
            response.status(),
            response.body()
        );
        let n: u64 = response
            .body()
            .parse()
            .expect("the handler answers a count");
        let found = n == KNOWN_N + 1;
        assert!(found || n == 1, "count {n}");
        if found {
            assert!(
                data.windows(KNOWN_ID.len())
                    .any(|w| w == KNOWN_ID.as_bytes()),
                "the known session was found in a header that does not name it"
            );
        }
        let set_cookie = response
            .headers()
            .get(SET_COOKIE)
            .expect("a changed session sets its cookie")
            .to_str()
            .expect("Set-Cookie is ASCII");
        let value = set_cookie
            .strip_prefix("session=")
            .and_then(|rest| rest.split(';').next())
            .expect("Set-Cookie names the session cookie");
        if found {
            assert_eq!(value, KNOWN_ID);
        } else {
            assert!(
                value.starts_with(MINTED_PREFIX),
                "adopted {value:?} from the client"
            );
        }
        assert_eq!(
            response.headers().get(VARY).map(HeaderValue::as_bytes),
            Some(&b"Cookie"[..])
        );
    }
}

// --- Session load/commit ---------------------------------------------------------------------

/// Drive a session over a memory or cookie backend with an arbitrary cookie value.
///
/// `data` is two flag bytes, then the cookie value (UTF-8). First byte, the handler's
/// operations: 0x01 delete, 0x02 remove `n`, 0x04 clear, 0x08 insert `n` + 1, 0x10 regenerate
/// the id, 0x20 insert a second key. Second byte, the setting: 0x01 no cookie, 0x04 idle and
/// absolute limits, 0x08 the memory record is ancient (past those limits), 0x10 signed cookie
/// backend, 0x20 private cookie backend.
pub fn session(data: &[u8]) {
    let [ops, setting, rest @ ..] = data else {
        return;
    };
    let (ops, setting) = (*ops, *setting);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let cookie: Option<Arc<str>> = (setting & 0x01 == 0).then(|| Arc::from(text));
    let mut policy = Policy::new(Some(Duration::from_secs(24 * 60 * 60)));
    if setting & 0x04 != 0 {
        policy.idle = Some(Duration::from_secs(60 * 60));
        policy.absolute = Some(Duration::from_secs(24 * 60 * 60));
    }
    let memory = setting & 0x30 == 0;
    let backend: Arc<dyn SessionBackend> = if setting & 0x10 != 0 {
        Arc::new(cookie_backend(Mode::Signed).clone())
    } else if setting & 0x20 != 0 {
        Arc::new(cookie_backend(Mode::Private).clone())
    } else if setting & 0x08 != 0 {
        Arc::new(memory_with_known(&SessionData::from_parts(
            known_values(),
            1,
            1,
        )))
    } else {
        Arc::new(memory_with_known(&SessionData::new(known_values())))
    };

    // What the session must find: the backend's own answer, less what the limits rule out.
    let stored = match cookie.as_deref() {
        Some(value) if !value.is_empty() => block_on(backend.read(value)).expect("reads work"),
        _ => None,
    };
    let expected = stored
        .clone()
        .filter(|record| !policy.has_limits() || !policy.expired(record, policy.now()));

    let context: Arc<dyn SessionContext> = Arc::new(Shared {
        backend: Arc::clone(&backend),
        policy,
    });
    let lazy = adapter::session(context, cookie.clone());
    let session = block_on(lazy.load()).expect("loading never fails on these backends");
    assert!(lazy.is_loaded());
    assert_eq!(
        session.id().map(|id| id.into_inner()),
        expected.as_ref().and(cookie.as_deref().map(str::to_owned)),
        "the session adopted the wrong id"
    );
    assert_eq!(
        session.values(),
        expected
            .as_ref()
            .map(|record| record.values().clone())
            .unwrap_or_default(),
        "the session loaded the wrong values"
    );

    let mut fresh_id = expected.is_none();
    if ops & 0x01 != 0 {
        block_on(session.delete()).expect("delete works");
        fresh_id = true;
    }
    if ops & 0x02 != 0 {
        session.remove("n").expect("loaded");
    }
    if ops & 0x04 != 0 {
        session.clear().expect("loaded");
    }
    if ops & 0x08 != 0 {
        let n: u64 = session.get("n").ok().flatten().unwrap_or(0);
        session.insert("n", n + 1).expect("loaded");
    }
    if ops & 0x20 != 0 {
        session.insert("other", text).expect("loaded");
    }
    if ops & 0x10 != 0 {
        session.regenerate_id().expect("loaded");
        fresh_id = true;
    }
    let values = session.values();

    let commit = block_on(adapter::commit(&lazy));
    let commit = match commit {
        Err(Error::CookieTooLarge { .. }) if !memory => return,
        other => other.expect("committing never fails on these backends"),
    };
    match &commit {
        Commit::Set { value, .. } => {
            assert!(cookie_safe(value), "an issued value is not cookie-safe");
            let saved = block_on(backend.read(value))
                .expect("reads work")
                .expect("a saved session reads back");
            assert_eq!(saved.values(), &values, "the saved values differ");
            if memory {
                if fresh_id {
                    assert!(value.starts_with(MINTED_PREFIX), "adopted {value:?}");
                } else {
                    assert_eq!(Some(value.as_str()), cookie.as_deref());
                }
            }
        }
        Commit::Expire => {
            assert!(cookie.is_some(), "expired a cookie that was not sent");
            assert!(values.is_empty(), "expired a session that holds values");
        }
        _ => assert!(
            values.is_empty() || !fresh_id,
            "{commit:?} for new values {values:?}"
        ),
    }
    if memory && stored.is_some() && (expected.is_none() || fresh_id || values.is_empty()) {
        // A stale, deleted, regenerated or emptied record is gone after the commit.
        let id = cookie.as_deref().expect("stored implies a cookie");
        assert!(
            block_on(backend.read(id)).expect("reads work").is_none(),
            "the old record outlived {commit:?}"
        );
    }
    // Committed: a second commit and any later change are refused, never silently lost.
    let again = block_on(adapter::commit(&lazy));
    assert!(
        matches!(again, Err(Error::Committed)),
        "a second commit was not refused: {again:?} after {commit:?}"
    );
    assert!(matches!(session.insert("late", 1), Err(Error::Committed)));
}

// --- seeds -----------------------------------------------------------------------------------

/// The seed corpus: (target, file name, bytes).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        seeds.push((target, format!("seed-{name}"), bytes));
    };
    let record = SessionData::from_parts(known_values(), 1_700_000_000, 1_700_000_100);
    let mut rich = record.clone();
    rich.values_mut().insert(
        "nested".into(),
        serde_json::json!({"a": [1, -2, 3.25, null, true, "é"], "b": {"c": {}}, "big": u64::MAX}),
    );

    // Bound to a user: the user in the cookie's header and in the serializers' records.
    let mut bound = rich.clone();
    bound.set_user(Some("fuzz-user@example.com".into()));

    let mut cookies = Vec::new();
    for (mode, target) in [
        (Mode::Signed, "cookie_signed"),
        (Mode::Private, "cookie_private"),
    ] {
        let value = block_on(cookie_backend(mode).create(&rich, Some(SEED_TTL)))
            .expect("the seed record seals");
        add(target, "valid", value.clone().into_bytes());
        let old = match mode {
            Mode::Signed => CookieBackend::signed(OLD_SECRET),
            Mode::Private => CookieBackend::private(OLD_SECRET),
        }
        .expect("long enough");
        let old_value =
            block_on(old.create(&record, Some(SEED_TTL))).expect("the seed record seals");
        add(target, "old-key", old_value.into_bytes());
        add(target, "payload", valid_payload());
        add(target, "payload-expired", payload(2, "{}"));
        let bound = block_on(cookie_backend(mode).create(&bound, Some(SEED_TTL)))
            .expect("the seed record seals");
        add(target, "bound", bound.into_bytes());
        cookies.push((mode, value));
    }

    add(
        "serializer_json",
        "record",
        sessionkit_core::JsonSerializer
            .serialize(&rich)
            .expect("encodes"),
    );
    add(
        "serializer_json",
        "bound",
        sessionkit_core::JsonSerializer
            .serialize(&bound)
            .expect("encodes"),
    );
    add(
        "serializer_json",
        "empty",
        br#"{"created":0,"accessed":0,"data":{}}"#.to_vec(),
    );
    // Nested arrays and objects, one level past the JSON limit, and a mixed record.
    add(
        "serializer_write_read",
        "deep",
        [0x0e_u8; 130].iter().fold(vec![0u8], |mut v, b| {
            v.push(*b);
            v
        }),
    );
    add(
        "serializer_write_read",
        "mixed",
        vec![
            0, 9, 2, 1, 2, 3, 4, 5, 6, 7, 8, 5, 3, b'a', b'b', b'c', 0x17, 0x0e, 0x1f,
        ],
    );
    add(
        "serializer_bincode",
        "record",
        sessionkit_core::BincodeSerializer
            .serialize(&rich)
            .expect("encodes"),
    );
    add(
        "serializer_bincode",
        "bound",
        sessionkit_core::BincodeSerializer
            .serialize(&bound)
            .expect("encodes"),
    );
    add(
        "serializer_bincode",
        "empty",
        sessionkit_core::BincodeSerializer
            .serialize(&SessionData::default())
            .expect("encodes"),
    );

    add(
        "cookie_header",
        "known",
        format!("session={KNOWN_ID}").into_bytes(),
    );
    add(
        "cookie_header",
        "among-others",
        format!("a=1; session=\"{KNOWN_ID}\"; b=2").into_bytes(),
    );
    add(
        "cookie_header",
        "twice",
        format!("session=; xsession=x; session={KNOWN_ID}").into_bytes(),
    );
    add(
        "cookie_header",
        "unknown",
        b"session=mintedUnknown000000000000000000".to_vec(),
    );

    let with = |ops: u8, setting: u8, cookie: &str| {
        let mut bytes = vec![ops, setting];
        bytes.extend_from_slice(cookie.as_bytes());
        bytes
    };
    add("session", "known-increment", with(0x08, 0x00, KNOWN_ID));
    add("session", "known-regenerate", with(0x18, 0x00, KNOWN_ID));
    add("session", "ancient-limits", with(0x08, 0x0c, KNOWN_ID));
    add("session", "no-cookie", with(0x08, 0x01, ""));
    add(
        "session",
        "unknown-clear",
        with(0x04, 0x00, "minted00000000000000000000000001"),
    );
    for (mode, value) in &cookies {
        let (name, setting) = match mode {
            Mode::Signed => ("signed", 0x10),
            Mode::Private => ("private", 0x20),
        };
        add(
            "session",
            &format!("{name}-increment"),
            with(0x08, setting, value),
        );
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// With `SESSIONS_FUZZ_WRITE_SEEDS=1`, (re)write `corpus/<target>/seed-*`; always run every
    /// seed through its target's checks (the committed files, when they exist).
    #[test]
    fn seeds() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let write = std::env::var_os("SESSIONS_FUZZ_WRITE_SEEDS").is_some();
        for (target, name, bytes) in super::seeds() {
            let path = corpus.join(target).join(&name);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let bytes = std::fs::read(&path).unwrap_or(bytes);
            match target {
                "cookie_signed" => cookie_decode(Mode::Signed, &bytes),
                "cookie_private" => cookie_decode(Mode::Private, &bytes),
                "serializer_json" => {
                    assert!(
                        serializer_round_trip(&sessionkit_core::JsonSerializer, &bytes).is_some()
                    )
                }
                "serializer_bincode" => assert!(
                    serializer_round_trip(&sessionkit_core::BincodeSerializer, &bytes).is_some()
                ),
                "cookie_header" => cookie_header(&bytes),
                "serializer_write_read" => serializer_write_read(&bytes),
                "session" => session(&bytes),
                other => panic!("no target {other}"),
            }
            if target.starts_with("cookie_") && name == "seed-valid" {
                let mode = if target == "cookie_signed" {
                    Mode::Signed
                } else {
                    Mode::Private
                };
                let value = std::str::from_utf8(&bytes).unwrap();
                assert!(
                    block_on(cookie_backend(mode).read(value))
                        .unwrap()
                        .is_some(),
                    "{path:?} no longer opens"
                );
            }
        }
    }
}
