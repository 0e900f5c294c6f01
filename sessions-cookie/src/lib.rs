//! Cookie-carried sessions for sessionkit: the default backend.
//!
//! [`CookieBackend`] keeps the whole session in the cookie: nothing is stored on the server.
//! The value the client holds is sealed with a key only the server knows:
//!
//! - [`CookieBackend::signed`]: HMAC-SHA256. The client can read the session (it is base64url
//!   JSON) but cannot change or forge it.
//! - [`CookieBackend::private`]: AES-256-GCM. The client can neither read nor change it.
//!
//! Keys are derived from your secret with HKDF-SHA256 by the `cookie` crate
//! (`cookie::Key::derive_from`: one signing and one encryption key), and sealed with the same
//! primitives its signed and private jars use (`hmac` + `sha2`, `aes-gcm`), kept keyed between
//! requests instead of being set up again for every cookie.
//!
//! Value formats, both made only of URL-safe characters:
//!
//! - signed: `<key id>.<base64url(payload)>.<base64url(HMAC-SHA256 of the cookie's name, a NUL
//!   byte, and everything before the tag)>`
//! - private: `<key id>.<base64url(nonce ‖ AES-256-GCM ciphertext of the payload ‖ tag)>`, the
//!   key id and the cookie's name bound as associated data, a fresh random 96-bit nonce per
//!   seal.
//!
//! The key id (8 characters) is derived from the key, the sealing mode and the format's
//! version, so a value of another format, another mode or another key names a key this backend
//! does not have and is refused before any cryptography: its client starts a fresh session.
//!
//! Every value is bound to the name of the cookie it travels in: a value minted as the `user`
//! cookie does not open as the `admin` cookie, even under the same secret. The session layer
//! binds its cookie's name itself when it is built
//! ([`bind_to_layer`](CookieBackend::bind_to_layer)); used alone,
//! the backend binds [`DEFAULT_COOKIE_NAME`] or what
//! [`with_cookie_name`](CookieBackendBuilder::with_cookie_name) sets.
//!
//! The payload is a header and then the session's values as a JSON object. The header is
//! one struct encoded with [bincode](https://docs.rs/bincode) 2's standard configuration
//! (integers as varints): a format byte (1), the issue time and deadline in Unix
//! milliseconds, creation and last access in Unix seconds, the session's own lifetime when it
//! has one, and the user the session is bound to when it is. Some 31 bytes for a session
//! with neither.
//!
//! ```
//! use sessionkit_cookie::CookieBackend;
//!
//! let secret = std::env::var("SESSION_SECRET")
//!     .unwrap_or_else(|_| "use a long random secret, 32 bytes or more!".to_owned());
//! let backend = CookieBackend::private(secret.as_bytes())?;
//! # Ok::<(), sessionkit_core::Error>(())
//! ```
//!
//! # Guarantees and limits
//!
//! - **Tamper-proof.** A changed, truncated, re-encoded or forged value, one sealed by an
//!   unknown key, or one sealed in the other mode, reads as no session (`Ok(None)`), never
//!   an error: the client simply starts a fresh session.
//! - **Server-enforced expiry.** The sealed payload carries the time it was issued and its
//!   deadline (issue time plus the write's TTL: the layer's `max_age`). A copy of an old cookie
//!   stops working at its deadline even if a client keeps sending it. When the layer gives no
//!   TTL (a browser-session cookie, `max_age` zero), the deadline is
//!   [`DEFAULT_LIFETIME`] (14 days) after the last write, or what
//!   [`with_default_lifetime`](CookieBackendBuilder::with_default_lifetime) sets: it never
//!   comes from a zero max age.
//! - **Key rotation.** [`with_old_key`](CookieBackendBuilder::with_old_key) adds keys that
//!   still open cookies; the first key seals. Each value names its key with a short key id, so opening
//!   tries one key. A cookie under an old key is re-sealed under the current key on the next
//!   write; once its key is dropped it is rejected.
//! - **An absolute limit by default.** A session ends [`DEFAULT_MAX_LIFETIME`] (30 days)
//!   after its creation, however often it is re-sealed (creation is inside the seal, and the
//!   seal's deadline never passes it), unless
//!   [`with_max_lifetime`](CookieBackendBuilder::with_max_lifetime) says otherwise; a
//!   layer's own `with_absolute_timeout` replaces it.
//! - **No server-side revocation.** [`remove`](sessionkit_core::SessionBackend::remove) does
//!   nothing on the server: a logout expires the cookie in the browser, but a copy taken
//!   earlier stays valid until its deadline. Keep deadlines short, or use a server-side
//!   backend, where that matters. For "log out everywhere", see
//!   [below](#signing-a-user-out-everywhere).
//! - **Overlapping requests.** Nothing on the server knows that another request logged in or
//!   out while a request ran, so the cookie set last wins: a slow request that changed the
//!   session and answers after a login seals its own, pre-login view, and a browser that gets
//!   that answer last is logged out again (after a logout, logged back in until the copy's
//!   deadline). A request that changed nothing sets no cookie, so read-only requests never
//!   undo a login or logout. The server-side backends leave the cookie to the request that
//!   logged in or out; use one where parallel requests and logins meet.
//! - **Size.** Browsers keep cookies up to 4096 bytes. The session layer measures the whole
//!   `Set-Cookie` value (name, sealed value, attributes) and refuses to send a larger one:
//!   the save fails with [`Error::CookieTooLarge`] (a 500 and a `tracing` error), never a
//!   truncated or silently dropped cookie. Sealing adds about a third (base64) plus some 50
//!   bytes to the JSON of the session (its header takes another 40 or so): keep cookie
//!   sessions small.
//!
//! Secrets shorter than 32 bytes are refused with [`Error::Config`].
//!
//! With the middleware from `sessionkit-tower` (whose default feature `cookie-backend` makes
//! this the backend of `SessionLayer::with_secret_key`):
//!
//! ```
//! # use sessionkit_cookie::CookieBackend;
//! # let secret = "a long random secret of at least 32 bytes!";
//! let layer = sessionkit_tower::SessionLayer::new(CookieBackend::private(secret.as_bytes())?);
//! # Ok::<(), sessionkit_core::Error>(())
//! ```
//!
//! # Signing a user out everywhere
//!
//! No server keeps these sessions, so the backend cannot list or revoke a user's sessions:
//! [`user_sessions`](sessionkit_core::SessionBackend::user_sessions) and the revoking methods
//! answer [`Error::Unsupported`]. What works is a per-user *generation* the application keeps
//! (a counter in its user table): each session stores the generation current at its login,
//! every request compares it with the user's current one, and "sign out everywhere" bumps the
//! counter. Sessions from before the bump end on their next request (their cookies are
//! expired), copied cookies included; the device that asked keeps its session by storing the
//! new generation. [`Session::set_user`](sessionkit_core::Session::set_user) works here as on any
//! backend (the user is sealed into the cookie), so the check knows whose counter to read:
//!
//! ```
//! use sessionkit_core::{Error, Session};
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//!
//! /// The application's counters (a column of its user table, in a real application).
//! #[derive(Default)]
//! struct Generations(Mutex<HashMap<String, u64>>);
//!
//! impl Generations {
//!     fn current(&self, user: &str) -> u64 {
//!         self.0.lock().unwrap().get(user).copied().unwrap_or(0)
//!     }
//!     fn bump(&self, user: &str) -> u64 {
//!         let mut all = self.0.lock().unwrap();
//!         let generation = all.entry(user.to_owned()).or_default();
//!         *generation += 1;
//!         *generation
//!     }
//! }
//!
//! async fn log_in(session: &Session, user: &str, generations: &Generations) -> Result<(), Error> {
//!     session.regenerate_id()?;
//!     session.set_user(user)?;
//!     session.insert("generation", generations.current(user))
//! }
//!
//! /// On every request (a middleware inside the session layer): a session from before the
//! /// last "sign out everywhere" ends here.
//! async fn check(session: &Session, generations: &Generations) -> Result<(), Error> {
//!     if let Some(user) = session.user() {
//!         if session.get::<u64>("generation")? != Some(generations.current(&user)) {
//!             session.delete().await?;
//!         }
//!     }
//!     Ok(())
//! }
//!
//! async fn sign_out_everywhere_else(session: &Session, generations: &Generations) -> Result<(), Error> {
//!     if let Some(user) = session.user() {
//!         session.insert("generation", generations.bump(&user))?;
//!     }
//!     Ok(())
//! }
//! # let _ = (log_in, check, sign_out_everywhere_else);
//! ```
//!
//! `tests/tests/cookie_backend.rs` in this workspace runs this pattern over HTTP.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | — | | this crate has no features: both modes are always built |
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::Key;
use hmac::{Hmac, Mac};
use sessionkit_core::{
    Changes, Clock, Error, Lifetime, SessionBackend, SessionData, Values, async_trait,
};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The deadline given to a session written without a TTL (a browser-session cookie): 14 days.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// How long after its creation a cookie session ends at the latest, whatever its activity,
/// unless [`with_max_lifetime`](CookieBackendBuilder::with_max_lifetime) says otherwise: 30 days.
/// Nothing on the server can revoke a copied cookie, so this bounds what a stolen one is
/// worth even when every visit re-seals it.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The cookie name values are bound to unless the layer or
/// [`with_cookie_name`](CookieBackendBuilder::with_cookie_name) says otherwise: the session layer's
/// default name.
pub const DEFAULT_COOKIE_NAME: &str = "session";

/// The most bytes a browser is sure to keep for one cookie.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const MAC_BYTES: usize = 32;

/// How the session is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// HMAC-SHA256: readable by the client, tamper-proof.
    Signed,
    /// AES-256-GCM: confidential and tamper-proof.
    Private,
}

#[derive(Clone)]
struct SealKey {
    id: String,
    /// HMAC-SHA256 with the key's pads already absorbed: cloned per signature.
    mac: Hmac<Sha256>,
    aead: Aes256Gcm,
}

/// Sessions carried in the cookie itself, signed or encrypted. See the [crate docs](crate).
#[derive(Clone)]
pub struct CookieBackend {
    mode: Mode,
    /// The first key seals; every key opens.
    keys: Arc<[SealKey]>,
    default_lifetime: Duration,
    /// The absolute limit from creation (`None`: none).
    max_lifetime: Option<Duration>,
    /// The name of the cookie the values travel in, bound into every seal.
    cookie_name: Arc<str>,
    /// Values expire by this clock.
    clock: Clock,
}

impl fmt::Debug for CookieBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieBackend")
            .field("mode", &self.mode)
            .field(
                "keys",
                &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .field("default_lifetime", &self.default_lifetime)
            .field("max_lifetime", &self.max_lifetime)
            .field("cookie_name", &self.cookie_name)
            .field("clock", &self.clock)
            .finish()
    }
}

fn seal_key(mode: Mode, secret: &[u8]) -> Result<SealKey, Error> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::Config(format!(
            "the session secret key is {} bytes; at least {MIN_SECRET_BYTES} random bytes are \
             needed. Generate one with `openssl rand -base64 48` (or \
             `CookieBackend::generate_secret()`) and keep it out of the source code",
            secret.len()
        )));
    }
    let key = Key::derive_from(secret);
    // The label names the format's version and the mode: values of an earlier format, or
    // sealed in the other mode, carry a key id no key here has.
    let label: &[u8] = match mode {
        Mode::Signed => b"sessionkit-cookie v1 signed key id\0",
        Mode::Private => b"sessionkit-cookie v1 private key id\0",
    };
    let digest = Sha256::new()
        .chain_update(label)
        .chain_update(key.master())
        .finalize();
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(key.signing())
        .map_err(|_| Error::Config("the derived signing key has a bad length".to_owned()))?;
    let aead = Aes256Gcm::new_from_slice(key.encryption())
        .map_err(|_| Error::Config("the derived encryption key has a bad length".to_owned()))?;
    Ok(SealKey {
        id: URL_SAFE_NO_PAD.encode(&digest[..6]),
        mac,
        aead,
    })
}

/// The format of the payload, the first byte of its header; the key id's label names it too.
const FORMAT: u8 = 1;

/// Room for a header in the buffer a payload is built in: any header without a user takes at
/// most 49 bytes.
const HEADER_ROOM: usize = 64;

/// The most bytes a header is read from: a format 1 header with the longest user takes under
/// 320, and a claimed length beyond this fails at once.
const HEADER_LIMIT: usize = 1024;

/// The header of a sealed payload; the session's values follow it as a JSON object.
///
/// Encoded with bincode's standard configuration: the fields in this order, integers as
/// varints (one byte below 251, five up to `u32::MAX`, nine beyond), an `Option` as a 0 or
/// 1 byte and then its value, an enum as its variant's index and then its fields, the user as
/// its length and its UTF-8 bytes. The layout is the struct's, derived, so writing and
/// reading cannot disagree; varints keep the times small (a header without lifetime or user
/// is 31 bytes until 2106, when seconds pass `u32::MAX`). `format` is a plain byte and comes
/// first, so a later format can be told from this one before anything else is read.
///
/// The user is borrowed both ways: from the session when sealing, from the opened payload
/// when reading. An empty one is never written (no user is `None`), nor one over
/// [`MAX_USER_LEN`](sessionkit_core::MAX_USER_LEN) bytes.
#[derive(bincode::Encode, bincode::BorrowDecode)]
struct Header<'a> {
    format: u8,
    /// When the value was sealed, Unix milliseconds.
    issued_ms: u64,
    /// Its deadline, Unix milliseconds.
    expires_ms: u64,
    /// The session's creation, Unix seconds.
    created: u64,
    /// The session's last access, Unix seconds.
    accessed: u64,
    lifetime: Option<SealedLifetime>,
    user: Option<&'a str>,
}

/// [`Lifetime`] as a header holds it: the inactivity window in whole seconds.
#[derive(Clone, Copy, bincode::Encode, bincode::Decode)]
enum SealedLifetime {
    BrowserSession,
    /// Unix seconds.
    Until(u64),
    /// Seconds.
    Inactivity(u64),
}

impl From<Lifetime> for SealedLifetime {
    fn from(lifetime: Lifetime) -> Self {
        match lifetime {
            Lifetime::BrowserSession => SealedLifetime::BrowserSession,
            Lifetime::Until(at) => SealedLifetime::Until(at),
            Lifetime::Inactivity(window) => SealedLifetime::Inactivity(window.as_secs()),
        }
    }
}

impl From<SealedLifetime> for Lifetime {
    fn from(lifetime: SealedLifetime) -> Self {
        match lifetime {
            SealedLifetime::BrowserSession => Lifetime::BrowserSession,
            SealedLifetime::Until(at) => Lifetime::Until(at),
            SealedLifetime::Inactivity(secs) => Lifetime::Inactivity(Duration::from_secs(secs)),
        }
    }
}

impl<'a> Header<'a> {
    /// The header at the start of `payload` and where the values start after it; `None` when
    /// the payload does not start with a format 1 header this backend could have written.
    fn read(payload: &'a [u8]) -> Option<(Header<'a>, usize)> {
        if payload.first() != Some(&FORMAT) {
            return None;
        }
        let config = bincode::config::standard().with_limit::<HEADER_LIMIT>();
        let (header, read): (Header<'a>, usize) =
            bincode::borrow_decode_from_slice(payload, config).ok()?;
        if header
            .user
            .is_some_and(|user| user.is_empty() || user.len() > sessionkit_core::MAX_USER_LEN)
        {
            return None;
        }
        Some((header, read))
    }
}

/// URL-safe base64 without padding (strict: no padding, no stray trailing bits).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The associated data of a private value: the key id and the cookie's name.
fn associated_data(key_id: &str, cookie_name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(key_id.len() + 1 + cookie_name.len());
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(cookie_name.as_bytes());
    aad
}

/// The options of a [`CookieBackend`], from [`CookieBackend::builder`]. Setting an option
/// never fails; [`build`](Self::build) reports the first secret that is too short.
#[must_use = "a builder makes no backend until `build()`"]
#[derive(Debug)]
pub struct CookieBackendBuilder {
    /// The backend so far, or the first error met.
    backend: Result<CookieBackend, Error>,
}

impl CookieBackendBuilder {
    /// The backend, once every secret has been checked.
    ///
    /// # Errors
    ///
    /// A secret (the current one or an old one) shorter than [`MIN_SECRET_BYTES`] is
    /// [`Error::Config`], with advice on making one.
    pub fn build(self) -> Result<CookieBackend, Error> {
        self.backend
    }

    fn map(self, f: impl FnOnce(CookieBackend) -> Result<CookieBackend, Error>) -> Self {
        CookieBackendBuilder {
            backend: self.backend.and_then(f),
        }
    }

    /// Keep opening cookies sealed with `secret`, an earlier key, while new cookies are sealed
    /// with the current one. Add as many as you are rotating out; each needs
    /// [`MIN_SECRET_BYTES`] like the current one.
    pub fn with_old_key(self, secret: impl AsRef<[u8]>) -> Self {
        self.map(|backend| {
            let old = seal_key(backend.mode, secret.as_ref())?;
            let keys: Vec<SealKey> = backend
                .keys
                .iter()
                .cloned()
                .chain(std::iter::once(old))
                .collect();
            Ok(CookieBackend {
                keys: keys.into(),
                ..backend
            })
        })
    }

    /// Bind values to the cookie `name` (default [`DEFAULT_COOKIE_NAME`]): a value sealed for
    /// one name does not open under another. The session layer does this itself with its own
    /// cookie name; set it when using the backend without the layer.
    pub fn with_cookie_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.map(|backend| Ok(backend.bound_to(&name)))
    }

    /// The deadline of sessions written without a TTL (browser-session cookies), counted from
    /// each write. Default [`DEFAULT_LIFETIME`].
    pub fn with_default_lifetime(self, lifetime: Duration) -> Self {
        self.map(|backend| {
            Ok(CookieBackend {
                default_lifetime: lifetime,
                ..backend
            })
        })
    }

    /// Expire values by `clock` instead of the system clock (a session layer binds the
    /// backend to its own clock). Tests advance a [manual](Clock::manual) clock instead of
    /// sleeping.
    pub fn with_clock(self, clock: Clock) -> Self {
        self.map(|backend| Ok(CookieBackend { clock, ..backend }))
    }

    /// The absolute limit of these sessions: each ends `limit` after its creation, however
    /// active (default [`DEFAULT_MAX_LIFETIME`], 30 days; `None` for no limit). A session
    /// layer's `with_absolute_timeout` replaces it. The creation time is inside the seal, so
    /// the limit holds for copies of the cookie too.
    pub fn with_max_lifetime(self, limit: Option<Duration>) -> Self {
        self.map(|backend| {
            Ok(CookieBackend {
                max_lifetime: limit,
                ..backend
            })
        })
    }
}

impl CookieBackend {
    /// This backend with its values bound to the cookie `name`.
    fn bound_to(&self, name: &str) -> CookieBackend {
        CookieBackend {
            cookie_name: Arc::from(name),
            ..self.clone()
        }
    }

    /// Fit this backend to the session layer it serves; `SessionLayer` calls it when it is
    /// built. Values are bound to the layer's cookie `name` from then on (a value sealed for
    /// one name does not open under another), so the two always agree; and the layer's
    /// absolute timeout, when it sets one, replaces this backend's own limit
    /// ([`with_max_lifetime`](CookieBackendBuilder::with_max_lifetime)); values expire by the
    /// layer's `clock`.
    pub fn bind_to_layer(&mut self, name: &str, absolute_timeout: Option<Duration>, clock: &Clock) {
        self.cookie_name = Arc::from(name);
        self.clock = clock.clone();
        if let Some(limit) = absolute_timeout {
            self.max_lifetime = Some(limit);
        }
    }

    fn new(mode: Mode, secret: &[u8]) -> Result<Self, Error> {
        Ok(CookieBackend {
            mode,
            keys: Arc::from([seal_key(mode, secret)?]),
            default_lifetime: DEFAULT_LIFETIME,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            cookie_name: Arc::from(DEFAULT_COOKIE_NAME),
            clock: Clock::system(),
        })
    }

    /// Signed sessions (HMAC-SHA256): the client can read them but not change them.
    ///
    /// # Errors
    ///
    /// A secret shorter than [`MIN_SECRET_BYTES`] is [`Error::Config`].
    pub fn signed(secret: impl AsRef<[u8]>) -> Result<Self, Error> {
        CookieBackend::new(Mode::Signed, secret.as_ref())
    }

    /// Private sessions (AES-256-GCM): the client can neither read nor change them.
    ///
    /// # Errors
    ///
    /// A secret shorter than [`MIN_SECRET_BYTES`] is [`Error::Config`].
    pub fn private(secret: impl AsRef<[u8]>) -> Result<Self, Error> {
        CookieBackend::new(Mode::Private, secret.as_ref())
    }

    /// Configure a backend sealing in `mode` with `secret`: set the options on the builder,
    /// then [`build`](CookieBackendBuilder::build) checks them (every secret) at once.
    ///
    /// ```
    /// use sessionkit_cookie::{CookieBackend, Mode};
    /// use std::time::Duration;
    ///
    /// let backend = CookieBackend::builder(Mode::Private, "the current secret, 32 bytes or more")
    ///     .with_old_key("the previous secret, still opening cookies")
    ///     .with_max_lifetime(Some(Duration::from_secs(7 * 24 * 60 * 60)))
    ///     .build()?;
    /// # Ok::<(), sessionkit_core::Error>(())
    /// ```
    pub fn builder(mode: Mode, secret: impl AsRef<[u8]>) -> CookieBackendBuilder {
        CookieBackendBuilder {
            backend: CookieBackend::new(mode, secret.as_ref()),
        }
    }

    /// The cookie name values are bound to.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// A fresh 64-byte secret from the operating system's CSPRNG, base64url-encoded: store it
    /// in your configuration and pass its bytes to [`signed`](CookieBackend::signed) or
    /// [`private`](CookieBackend::private).
    ///
    /// # Panics
    ///
    /// Only if the operating system cannot provide random bytes.
    pub fn generate_secret() -> String {
        let mut secret = [0u8; 64];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut secret)
            .expect("the operating system's random number generator failed");
        URL_SAFE_NO_PAD.encode(secret)
    }

    /// The sealing mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where the payload starts in the buffer [`seal`](Self::seal) takes: private values keep
    /// room for the nonce in front, so the payload is encrypted where it is.
    fn payload_at(&self) -> usize {
        match self.mode {
            Mode::Signed => 0,
            Mode::Private => NONCE_BYTES,
        }
    }

    /// Seal the payload in `buf[self.payload_at()..]` under the current key. One buffer from
    /// start to end: private values are encrypted in place behind their nonce.
    fn seal(&self, mut buf: Vec<u8>) -> Result<String, Error> {
        let Some(key) = self.keys.first() else {
            return Err(Error::Config("the cookie backend has no key".to_owned()));
        };
        match self.mode {
            Mode::Signed => {
                let mut value = String::with_capacity(key.id.len() + buf.len() * 4 / 3 + 48);
                value.push_str(&key.id);
                value.push('.');
                URL_SAFE_NO_PAD.encode_string(&buf, &mut value);
                let mac = self.mac(key, &value);
                value.push('.');
                URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut value);
                Ok(value)
            }
            Mode::Private => {
                let (nonce, payload) = buf.split_at_mut(NONCE_BYTES);
                getrandom::fill(nonce)
                    .map_err(|e| Error::backend(format!("no randomness for a nonce: {e}")))?;
                let aad = associated_data(&key.id, &self.cookie_name);
                let tag = key
                    .aead
                    .encrypt_in_place_detached(Nonce::from_slice(nonce), &aad, payload)
                    .map_err(|_| Error::backend("AES-GCM sealing failed"))?;
                buf.extend_from_slice(&tag);
                let mut value = String::with_capacity(key.id.len() + 1 + buf.len() * 4 / 3 + 4);
                value.push_str(&key.id);
                value.push('.');
                URL_SAFE_NO_PAD.encode_string(&buf, &mut value);
                Ok(value)
            }
        }
    }

    /// The MAC of a signed value: over the cookie's name, a NUL byte (names never hold one),
    /// and `signed`, the value up to its tag.
    fn mac(&self, key: &SealKey, signed: &str) -> Hmac<Sha256> {
        let mut mac = key.mac.clone();
        mac.update(self.cookie_name.as_bytes());
        mac.update(&[0]);
        mac.update(signed.as_bytes());
        mac
    }

    /// The payload inside a sealed value, as a buffer and where in it the payload starts;
    /// `None` when the value does not open under any key.
    fn open(&self, value: &str) -> Option<(Vec<u8>, usize)> {
        let (id, rest) = value.split_once('.')?;
        let key = self.keys.iter().find(|k| k.id == id)?;
        match self.mode {
            Mode::Signed => {
                let (signed, tag) = value.rsplit_once('.')?;
                if signed.len() <= id.len() {
                    return None;
                }
                let mut expected = [0u8; MAC_BYTES];
                let decoded = URL_SAFE_NO_PAD
                    .decode_slice(tag.as_bytes(), &mut expected)
                    .ok()?;
                if decoded != MAC_BYTES {
                    return None;
                }
                // Constant-time comparison.
                self.mac(key, signed).verify_slice(&expected).ok()?;
                Some((decode_base64(&signed[id.len() + 1..])?, 0))
            }
            Mode::Private => {
                let mut raw = decode_base64(rest)?;
                if raw.len() < NONCE_BYTES + TAG_BYTES {
                    return None;
                }
                // Decrypt where the bytes already are: no second buffer.
                let tag_at = raw.len() - TAG_BYTES;
                let (head, tag) = raw.split_at_mut(tag_at);
                let (nonce, sealed) = head.split_at_mut(NONCE_BYTES);
                key.aead
                    .decrypt_in_place_detached(
                        Nonce::from_slice(nonce),
                        &associated_data(&key.id, &self.cookie_name),
                        sealed,
                        aes_gcm::Tag::from_slice(tag),
                    )
                    .ok()?;
                raw.truncate(tag_at);
                Some((raw, NONCE_BYTES))
            }
        }
    }

    fn decode(&self, value: &str) -> Option<SessionData> {
        let (buf, at) = self.open(value)?;
        let payload = buf.get(at..)?;
        let (header, values_at) = Header::read(payload)?;
        if header.expires_ms <= self.clock.unix_millis() {
            return None;
        }
        if self.past_max_lifetime(header.created) {
            return None;
        }
        // Authentic but unreadable can only mean a format change: treat as no session.
        let values: Values = serde_json::from_slice(payload.get(values_at..)?).ok()?;
        let mut data = SessionData::from_parts(values, header.created, header.accessed);
        data.set_lifetime(header.lifetime.map(Lifetime::from));
        data.set_user(header.user.map(Into::into));
        Some(data)
    }

    /// Whether a session created at `created` (Unix seconds) is past the absolute limit.
    fn past_max_lifetime(&self, created: u64) -> bool {
        self.max_lifetime.is_some_and(|limit| {
            created.saturating_add(limit.as_secs()) <= self.clock.unix_millis() / 1000
        })
    }

    fn encode(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        let iat = self.clock.unix_millis();
        let lifetime = ttl.unwrap_or(self.default_lifetime);
        let mut exp = iat.saturating_add(u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX));
        if let Some(limit) = self.max_lifetime {
            // Never past the absolute limit, counted from the session's creation.
            let end = data.created_unix().saturating_add(limit.as_secs());
            exp = exp.min(end.saturating_mul(1000));
        }
        let user = data.user().filter(|user| !user.is_empty());
        if let Some(user) = user.filter(|user| user.len() > sessionkit_core::MAX_USER_LEN) {
            return Err(Error::InvalidUser { len: user.len() });
        }
        let header = Header {
            format: FORMAT,
            issued_ms: iat,
            expires_ms: exp,
            created: data.created_unix(),
            accessed: data.last_access_unix(),
            lifetime: data.lifetime().map(SealedLifetime::from),
            user,
        };
        let payload_at = self.payload_at();
        // Room for the nonce, the header, typical JSON and the tag: one allocation.
        let mut buf = Vec::with_capacity(payload_at + HEADER_ROOM + 128 + TAG_BYTES);
        buf.resize(payload_at, 0);
        bincode::encode_into_std_write(header, &mut buf, bincode::config::standard())
            .map_err(Error::encode)?;
        serde_json::to_writer(&mut buf, data.values()).map_err(Error::encode)?;
        let value = self.seal(buf)?;
        if value.len() > MAX_COOKIE_BYTES {
            return Err(Error::CookieTooLarge {
                size: value.len(),
                limit: MAX_COOKIE_BYTES,
            });
        }
        Ok(value)
    }
}

#[async_trait]
impl SessionBackend for CookieBackend {
    /// Open the sealed value: `None` for anything that is not a live value of this backend
    /// (forged, tampered, sealed under another key, name or mode, expired, past the absolute
    /// limit, or longer than [`MAX_COOKIE_BYTES`]).
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        if id.len() > MAX_COOKIE_BYTES {
            return Ok(None);
        }
        Ok(self.decode(id))
    }

    /// Seal `data` into a new cookie value.
    async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        self.encode(data, ttl)
    }

    /// The client holds the state, so there is nothing stored to merge into: the session as
    /// the request left it is sealed anew (an emptied one ends, and its cookie is expired).
    /// The old value is not opened again: it identifies nothing on the server, and the
    /// session came from it through a read that checked it. Of two overlapping requests
    /// that change the session, the cookie set last wins.
    async fn apply(
        &self,
        _id: &str,
        session: &SessionData,
        _changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        if session.is_empty() {
            return Ok(None);
        }
        self.encode(session, ttl).map(Some)
    }

    /// Nothing to do: the session lives in the client. The layer expires the cookie.
    async fn remove(&self, _id: &str) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
