use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// How many random bytes a generated id carries: 192 bits from the operating system's CSPRNG.
const ID_RANDOM_BYTES: usize = 24;

/// Mint a fresh session id: 24 bytes (192 bits) from the operating system's
/// cryptographically secure generator, encoded as URL-safe base64 without padding
/// (32 characters of `A–Z a–z 0–9 - _`).
///
/// # Panics
///
/// Only if the operating system cannot provide random bytes at all, in which case no
/// secure session can be created and continuing would be unsafe.
pub fn generate_id() -> String {
    let mut bytes = [0u8; ID_RANDOM_BYTES];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A session id (or, for cookie-carried sessions, the cookie value).
///
/// It is a bearer secret: whoever knows it holds the session. Its `Debug` output therefore
/// never shows the value; call [`SessionId::expose`] where the value itself is needed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// Wrap a value as a session id.
    pub fn new(value: impl Into<String>) -> Self {
        SessionId(value.into())
    }

    /// The secret value, for storage keys and the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret value, owned.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(<redacted, {} chars>)", self.0.len())
    }
}

impl From<String> for SessionId {
    fn from(value: String) -> Self {
        SessionId(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let id = SessionId::new(generate_id());
        let shown = format!("{id:?} {:?}", Some(&id));
        assert!(!shown.contains(id.expose()), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn generated_ids_are_url_safe_and_carry_192_bits() {
        let id = generate_id();
        assert_eq!(id.len(), 32);
        assert!(crate::store::in_generated_format(&id));
        assert_ne!(id, generate_id());
    }
}
