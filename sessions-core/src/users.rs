//! Sessions bound to a user: what a backend lists and revokes for "log out everywhere".

use crate::SessionData;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

/// The longest user a session can be bound to, in bytes (what an indexed SQL column holds).
pub const MAX_USER_LEN: usize = 255;

/// A stand-in for one session's id, safe to show in a page and to send back in a form: it
/// names the session without letting anyone use it. An id is the bearer credential of its
/// session; the device id is the first 128 bits of a SHA-256 of the id (with a fixed label),
/// URL-safe base64, so the same id gives the same device id on every server and the id cannot be
/// recovered from it.
///
/// ```
/// use sessionkit_core::DeviceId;
///
/// let device = DeviceId::of("lI5bDcq0dmnNTXk2PtDsX9gAeGK8JcJQ");
/// assert_eq!(device.as_str().len(), 22);
/// assert!(device.is_of("lI5bDcq0dmnNTXk2PtDsX9gAeGK8JcJQ"));
/// // Sent back from a form:
/// assert_eq!(DeviceId::from(device.to_string()), device);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    /// The device id of the session `id`.
    pub fn of(id: &str) -> DeviceId {
        let mut hash = Sha256::new();
        hash.update(b"sessions handle\0");
        hash.update(id.as_bytes());
        DeviceId(URL_SAFE_NO_PAD.encode(&hash.finalize()[..16]))
    }

    /// Whether this is the device id of the session `id`.
    pub fn is_of(&self, id: &str) -> bool {
        *self == DeviceId::of(id)
    }

    /// The device id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A device id as sent back by a client (from a form or a path); one that names no session
/// simply matches none.
impl From<String> for DeviceId {
    fn from(text: String) -> Self {
        DeviceId(text)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

/// One live session of a user, as [`SessionBackend::user_sessions`](crate::SessionBackend::user_sessions)
/// lists it: a [`DeviceId`] instead of the session id, and the record (its creation, last access and
/// values, where an application keeps a label such as the browser's user agent).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct UserSession {
    /// Names the session for [`revoke_user_session`](crate::SessionBackend::revoke_user_session)
    /// without giving its id away.
    pub id: DeviceId,
    /// The stored record.
    pub record: SessionData,
    /// Whether this is the session of the request that asked
    /// ([`Session::user_sessions`](crate::Session::user_sessions) sets it; a backend's own
    /// listing knows no current session and leaves it `false`).
    pub current: bool,
}

impl UserSession {
    /// The session stored under `id` as `record`.
    pub fn new(id: &str, record: SessionData) -> Self {
        UserSession {
            id: DeviceId::of(id),
            record,
            current: false,
        }
    }

    /// Sort `sessions` most recently used first, the order a "your devices" page shows (and
    /// every backend of this workspace lists in).
    pub fn most_recent_first(sessions: &mut [UserSession]) {
        sessions.sort_by(|a, b| {
            b.record
                .last_access_unix()
                .cmp(&a.record.last_access_unix())
                .then_with(|| a.id.0.cmp(&b.id.0))
        });
    }

    /// A value the session holds, decoded (`None` when it holds no such key or the value is
    /// not a `T`): the label an application stored, such as a user agent.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let value = self.record.values().get(key)?;
        T::deserialize(value).ok()
    }
}
