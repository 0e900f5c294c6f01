use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// How many random bytes a generated id carries: 192 bits from the operating system's CSPRNG.
pub const ID_RANDOM_BYTES: usize = 24;

/// Mint a fresh session id: [`ID_RANDOM_BYTES`] bytes from the operating system's
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

/// `1` when `b` is URL-safe base64 (`A–Z a–z 0–9 - _`), or `.` with `dots`; else `0`.
/// Arithmetic only, no table or branch, so the compiler can check 16 bytes at a time.
#[inline(always)]
fn url_safe_byte(b: u8, dots: bool) -> u8 {
    u8::from(
        ((b | 0x20).wrapping_sub(b'a') < 26)
            | (b.wrapping_sub(b'0') < 10)
            | (b == b'-')
            | (b == b'_')
            | (dots & (b == b'.')),
    )
}

/// Whether every byte of `value` is URL-safe base64 (`A–Z a–z 0–9 - _`), and, with `dots`,
/// `.` as well. Cheap enough for every request's cookie (see [`every_byte`]).
pub fn is_url_safe(value: &str, dots: bool) -> bool {
    every_byte(value, |b| url_safe_byte(b, dots))
}

/// Whether `ok` gives `1` for every byte of `value` (it must give `0` or `1`): a helper for
/// [`accepts`](crate::SessionBackend::accepts) checks. Bytes are checked in 16-byte blocks
/// without a branch per byte, so an `ok` written with arithmetic and comparisons (no table,
/// no early return) compiles to vector code.
#[inline]
pub fn every_byte(value: &str, ok: impl Fn(u8) -> u8) -> bool {
    let mut blocks = value.as_bytes().chunks_exact(16);
    let mut lanes = [1u8; 16];
    for block in &mut blocks {
        for (lane, &b) in lanes.iter_mut().zip(block) {
            *lane &= ok(b);
        }
    }
    let rest = blocks.remainder().iter().fold(1u8, |all, &b| all & ok(b));
    lanes.iter().fold(rest, |all, &lane| all & lane) == 1
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
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(id, generate_id());
    }

    #[test]
    fn url_safe_check_agrees_with_the_alphabet_for_every_byte_and_position() {
        let plain = |b: u8, dots: bool| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (dots && b == b'.')
        };
        // Every byte value, at every position of a block and of the tail, for both alphabets.
        for len in [1, 15, 16, 17, 32, 33, 47] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut value = vec![b'A'; len];
                    value[at] = b;
                    let Ok(text) = std::str::from_utf8(&value) else {
                        continue;
                    };
                    for dots in [false, true] {
                        assert_eq!(
                            is_url_safe(text, dots),
                            plain(b, dots),
                            "byte {b:#04x} at {at} of {len}, dots {dots}"
                        );
                    }
                }
            }
        }
        assert!(is_url_safe("", false));
        assert!(!is_url_safe("abcdefghijklmnopé", false));
    }
}
