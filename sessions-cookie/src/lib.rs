//! Cookie-carried sessions for the `sessions` workspace: the default backend.
//!
//! [`CookieBackend`] keeps the whole session in the cookie: nothing is stored on the server.
//! The value the client holds is sealed with a key only the server knows:
//!
//! - [`CookieBackend::signed`]: HMAC-SHA256. The client can read the session (it is base64url
//!   JSON) but cannot change or forge it.
//! - [`CookieBackend::private`]: AES-256-GCM. The client can neither read nor change it.
//!
//! Sealing and opening use the `cookie` crate's signed and private jars; keys are derived from
//! your secret with HKDF-SHA256 (`cookie::Key::derive_from`).
//!
//! ```
//! use sessions_cookie::CookieBackend;
//!
//! let secret = std::env::var("SESSION_SECRET")
//!     .unwrap_or_else(|_| "use a long random secret, 32 bytes or more!".to_owned());
//! let backend = CookieBackend::private(secret.as_bytes())?;
//! # Ok::<(), sessions_core::Error>(())
//! ```
//!
//! # Guarantees and limits
//!
//! - **Tamper-proof.** A changed, truncated, re-encoded or forged value, one sealed by an
//!   unknown key, or one sealed in the other mode, reads as no session ([`Ok(None)`]), never
//!   an error: the client simply starts a fresh session.
//! - **Server-enforced expiry.** The sealed payload carries the time it was issued and its
//!   deadline (issue time plus the write's TTL: the layer's `max_age`). A copy of an old cookie
//!   stops working at its deadline even if a client keeps sending it. When the layer gives no
//!   TTL (a browser-session cookie, `max_age` zero), the deadline is
//!   [`DEFAULT_LIFETIME`] (14 days) after the last write, or what
//!   [`with_default_lifetime`](CookieBackend::with_default_lifetime) sets: it never comes from
//!   a zero max age.
//! - **Key rotation.** [`with_old_key`](CookieBackend::with_old_key) adds keys that still open
//!   cookies; the first key seals. Each value names its key with a short key id, so opening
//!   tries one key. A cookie under an old key is re-sealed under the current key on the next
//!   write; once its key is dropped it is rejected.
//! - **No server-side revocation.** [`remove`](sessions_core::SessionBackend::remove) does
//!   nothing on the server: a logout expires the cookie in the browser, but a copy taken
//!   earlier stays valid until its deadline. Keep deadlines short, or use a server-side
//!   backend, where that matters.
//! - **Size.** Browsers keep cookies up to 4096 bytes. The session layer measures the whole
//!   `Set-Cookie` value (name, sealed value, attributes) and refuses to send a larger one:
//!   the save fails with [`Error::CookieTooLarge`] (a 500 and a `tracing` error), never a
//!   truncated or silently dropped cookie. Sealing adds about a third (base64) plus 52 bytes
//!   (signed) or 40 bytes (private) to the JSON of the session: keep cookie sessions small.
//!
//! Secrets shorter than 32 bytes are refused with [`Error::Config`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, CookieJar, Key};
use serde::{Deserialize, Serialize};
use sessions_core::{Error, SessionBackend, SessionData, Values, async_trait};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The deadline given to a session written without a TTL (a browser-session cookie): 14 days.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// The most bytes a browser is sure to keep for one cookie.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The cookie name the jars bind into their seal (AES-GCM associated data); fixed, so a value
/// opens whatever the layer's cookie is called.
const SEAL_NAME: &str = "sessions-cookie.v1";

/// How the session is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// HMAC-SHA256: readable by the client, tamper-proof.
    Signed,
    /// AES-256-GCM: confidential and tamper-proof.
    Private,
}

struct SealKey {
    id: String,
    key: Key,
}

/// Sessions carried in the cookie itself, signed or encrypted. See the [crate docs](crate).
#[derive(Clone)]
pub struct CookieBackend {
    mode: Mode,
    /// The first key seals; every key opens.
    keys: Arc<[SealKey]>,
    default_lifetime: Duration,
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
            .finish()
    }
}

fn seal_key(secret: &[u8]) -> Result<SealKey, Error> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::Config(format!(
            "the session secret key is {} bytes; at least {MIN_SECRET_BYTES} random bytes are \
             needed. Generate one with `openssl rand -base64 48` (or \
             `CookieBackend::generate_secret()`) and keep it out of the source code",
            secret.len()
        )));
    }
    let key = Key::derive_from(secret);
    let digest = Sha256::new()
        .chain_update(b"sessions-cookie key id\0")
        .chain_update(key.master())
        .finalize();
    Ok(SealKey {
        id: URL_SAFE_NO_PAD.encode(&digest[..6]),
        key,
    })
}

/// What the seal covers: the values, their metadata and the deadline.
#[derive(Serialize)]
struct PayloadRef<'a> {
    /// Issued at, Unix milliseconds.
    iat: u64,
    /// Deadline, Unix milliseconds.
    exp: u64,
    c: u64,
    a: u64,
    d: &'a Values,
}

#[derive(Deserialize)]
struct Payload {
    #[allow(dead_code)]
    iat: u64,
    exp: u64,
    c: u64,
    a: u64,
    d: Values,
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl CookieBackend {
    fn new(mode: Mode, secret: &[u8]) -> Result<Self, Error> {
        Ok(CookieBackend {
            mode,
            keys: Arc::from([seal_key(secret)?]),
            default_lifetime: DEFAULT_LIFETIME,
        })
    }

    /// Signed sessions (HMAC-SHA256): the client can read them but not change them.
    ///
    /// # Errors
    ///
    /// A secret shorter than [`MIN_SECRET_BYTES`] is [`Error::Config`].
    pub fn signed(secret: &[u8]) -> Result<Self, Error> {
        CookieBackend::new(Mode::Signed, secret)
    }

    /// Private sessions (AES-256-GCM): the client can neither read nor change them.
    ///
    /// # Errors
    ///
    /// A secret shorter than [`MIN_SECRET_BYTES`] is [`Error::Config`].
    pub fn private(secret: &[u8]) -> Result<Self, Error> {
        CookieBackend::new(Mode::Private, secret)
    }

    /// A fresh 64-byte secret from the operating system's CSPRNG, base64url-encoded: store it
    /// in your configuration and pass its bytes to [`signed`](CookieBackend::signed) or
    /// [`private`](CookieBackend::private).
    pub fn generate_secret() -> String {
        URL_SAFE_NO_PAD.encode(Key::generate().master())
    }

    /// Keep opening cookies sealed with `secret`, an earlier key, while new cookies are sealed
    /// with the current one. Add as many as you are rotating out.
    ///
    /// # Errors
    ///
    /// A secret shorter than [`MIN_SECRET_BYTES`] is [`Error::Config`].
    pub fn with_old_key(self, secret: &[u8]) -> Result<Self, Error> {
        let old = seal_key(secret)?;
        let keys: Vec<SealKey> = self
            .keys
            .iter()
            .map(|k| SealKey {
                id: k.id.clone(),
                key: k.key.clone(),
            })
            .chain(std::iter::once(old))
            .collect();
        Ok(CookieBackend {
            keys: keys.into(),
            ..self
        })
    }

    /// The deadline of sessions written without a TTL (browser-session cookies), counted from
    /// each write. Default [`DEFAULT_LIFETIME`].
    #[must_use]
    pub fn with_default_lifetime(self, lifetime: Duration) -> Self {
        CookieBackend {
            default_lifetime: lifetime,
            ..self
        }
    }

    /// The sealing mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn seal(&self, plaintext: String) -> Result<String, Error> {
        let Some(current) = self.keys.first() else {
            return Err(Error::Config("the cookie backend has no key".to_owned()));
        };
        let mut jar = CookieJar::new();
        let cookie = Cookie::new(SEAL_NAME, plaintext);
        match self.mode {
            Mode::Signed => jar.signed_mut(&current.key).add(cookie),
            Mode::Private => jar.private_mut(&current.key).add(cookie),
        }
        let sealed = jar
            .get(SEAL_NAME)
            .ok_or_else(|| Error::backend("the cookie jar lost the sealed session"))?;
        Ok(format!("{}.{}", current.id, sealed.value()))
    }

    /// The plaintext of a sealed value, or `None` when it does not open under any key.
    fn open(&self, value: &str) -> Option<String> {
        let (id, sealed) = value.split_once('.')?;
        let key = &self.keys.iter().find(|k| k.id == id)?.key;
        let jar = CookieJar::new();
        let cookie = Cookie::new(SEAL_NAME, sealed.to_owned());
        let opened = match self.mode {
            Mode::Signed => jar.signed(key).verify(cookie)?,
            Mode::Private => jar.private(key).decrypt(cookie)?,
        };
        Some(opened.value().to_owned())
    }

    fn decode(&self, value: &str) -> Option<SessionData> {
        let plaintext = self.open(value)?;
        let json = match self.mode {
            Mode::Signed => URL_SAFE_NO_PAD.decode(plaintext).ok()?,
            Mode::Private => plaintext.into_bytes(),
        };
        // Authentic but unreadable can only mean a format change: treat as no session.
        let payload: Payload = serde_json::from_slice(&json).ok()?;
        if payload.exp <= now_millis() {
            return None;
        }
        Some(SessionData::from_parts(payload.d, payload.c, payload.a))
    }

    fn encode(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        let iat = now_millis();
        let lifetime = ttl.unwrap_or(self.default_lifetime);
        let exp = iat.saturating_add(u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX));
        let json = serde_json::to_vec(&PayloadRef {
            iat,
            exp,
            c: data.created_unix(),
            a: data.last_access_unix(),
            d: data.values(),
        })
        .map_err(Error::encode)?;
        let plaintext = match self.mode {
            Mode::Signed => URL_SAFE_NO_PAD.encode(json),
            // The private jar base64-encodes the ciphertext itself.
            Mode::Private => String::from_utf8(json).map_err(Error::encode)?,
        };
        let value = self.seal(plaintext)?;
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
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        Ok(self.decode(id))
    }

    /// Seal `data` into a new cookie value. An update (`Some(value)`) first checks that the
    /// old value is authentic and unexpired: a value the server never issued is not adopted
    /// ([`Error::SessionGone`]).
    async fn write(
        &self,
        id: Option<&str>,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        if let Some(old) = id {
            if self.decode(old).is_none() {
                return Err(Error::SessionGone);
            }
        }
        self.encode(data, ttl)
    }

    /// Nothing to do: the session lives in the client. The layer expires the cookie.
    async fn remove(&self, _id: &str) -> Result<(), Error> {
        Ok(())
    }

    async fn exists(&self, id: &str) -> Result<bool, Error> {
        Ok(self.decode(id).is_some())
    }

    /// A key id, a dot, and base64 (standard or URL-safe alphabet), at most
    /// [`MAX_COOKIE_BYTES`] long: anything else cannot be a sealed session.
    fn accepts(&self, value: &str) -> bool {
        value.len() <= MAX_COOKIE_BYTES
            && value.contains('.')
            && value.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'=' | b'.')
            })
    }
}

#[cfg(test)]
mod tests;
