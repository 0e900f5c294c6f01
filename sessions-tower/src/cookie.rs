//! The session cookie, read from `Cookie` headers and rendered for `Set-Cookie` with the
//! `cookie` crate.

use crate::config::Config;
use ::cookie::Cookie;
use http::header::{COOKIE, HeaderMap, HeaderValue};
use std::borrow::Cow;
use std::sync::Arc;

/// The value of cookie `name` in the request: among the cookies of that name (in every
/// `Cookie` header, in order), the first that is valid UTF-8, not empty, and `usable`. `None`
/// when the client sent no such cookie; `Some("")` when it sent one but none was usable, which
/// loads as a fresh session and gets the cookie expired.
pub(crate) fn request_value(
    headers: &HeaderMap,
    name: &str,
    usable: impl Fn(&str) -> bool,
) -> Option<Arc<str>> {
    let mut sent = false;
    for header in headers.get_all(COOKIE) {
        // A header that is not UTF-8 as a whole still has its valid pairs read: the bytes that
        // are not become U+FFFD, which no usable value holds.
        let (text, lossy) = match std::str::from_utf8(header.as_bytes()) {
            Ok(text) => (Cow::Borrowed(text), false),
            Err(_) => (String::from_utf8_lossy(header.as_bytes()), true),
        };
        for cookie in Cookie::split_parse(text).flatten() {
            if cookie.name() != name {
                continue;
            }
            let value = cookie.value_trimmed();
            if value.is_empty() {
                continue;
            }
            sent = true;
            if (lossy && value.contains('\u{FFFD}')) || !usable(value) {
                continue;
            }
            return Some(Arc::from(value));
        }
    }
    sent.then(|| Arc::from(""))
}

/// What the layer sends in `Set-Cookie`, rendered by the `cookie` crate once per
/// configuration: the attributes that follow `name=value`, and the whole removal cookie.
#[derive(Clone, Debug)]
pub(crate) struct Rendered {
    /// `; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=...`.
    attributes: String,
    /// `name=; ...; Max-Age=0; Expires=<a year ago>`, same path and domain.
    removal: HeaderValue,
}

impl Rendered {
    /// Nothing rendered yet: what a configuration holds until its first `render`.
    pub(crate) fn unrendered() -> Self {
        Rendered {
            attributes: String::new(),
            removal: HeaderValue::from_static(""),
        }
    }

    pub(crate) fn new(config: &Config) -> Self {
        let mut builder = Cookie::build((config.cookie_name.as_str(), ""))
            .path(config.path.as_str())
            .secure(config.secure)
            .http_only(config.http_only)
            .same_site(config.same_site);
        if let Some(domain) = &config.domain {
            builder = builder.domain(domain.as_str());
        }
        let removal = builder.clone().removal().to_string();
        if let Some(max_age) = config.max_age {
            // Max-Age counts whole seconds; round up so a sub-second age never becomes the
            // `Max-Age=0` that deletes the cookie.
            let secs = max_age
                .as_secs()
                .saturating_add(u64::from(max_age.subsec_nanos() > 0));
            let secs = i64::try_from(secs).unwrap_or(i64::MAX);
            builder = builder.max_age(::cookie::time::Duration::seconds(secs));
        }
        let full = builder.to_string();
        Rendered {
            attributes: full
                .get(config.cookie_name.len() + 1..)
                .unwrap_or_default()
                .to_owned(),
            // The layer's setters validate names, paths and domains, so this is a valid header.
            removal: HeaderValue::try_from(removal)
                .unwrap_or_else(|_| HeaderValue::from_static("session=; Max-Age=0")),
        }
    }

    /// The `Set-Cookie` value that stores `value` under `name`; `None` when `value` cannot be
    /// a cookie value.
    pub(crate) fn set(&self, name: &str, value: &str) -> Option<HeaderValue> {
        if !is_cookie_value(value) {
            return None;
        }
        let mut header =
            String::with_capacity(name.len() + 1 + value.len() + self.attributes.len());
        header.push_str(name);
        header.push('=');
        header.push_str(value);
        header.push_str(&self.attributes);
        HeaderValue::try_from(header).ok()
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub(crate) fn removal(&self) -> HeaderValue {
        self.removal.clone()
    }
}

/// Whether `value` may stand as a cookie value unquoted: only RFC 6265 `cookie-octet`s
/// (visible ASCII but `"`, `,`, `;` and `\`). A backend returning anything else (a `;` would
/// smuggle in attributes) is refused. The `cookie` crate renders whatever it is given, so this
/// check stays ours.
fn is_cookie_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(COOKIE, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn find(values: &[&[u8]]) -> Option<String> {
        request_value(&headers(values), "session", |v| v != "refused").map(|v| v.to_string())
    }

    #[test]
    fn finds_the_named_cookie_among_others() {
        assert_eq!(find(&[b"a=1; session=abc; b=2"]).as_deref(), Some("abc"));
        assert_eq!(find(&[b"session=abc"]).as_deref(), Some("abc"));
        assert_eq!(
            find(&[b"xsession=abc; session=def"]).as_deref(),
            Some("def")
        );
        assert_eq!(find(&[b"session=\"quoted\""]).as_deref(), Some("quoted"));
        assert_eq!(
            find(&[b"a=1", b"session=second-header"]).as_deref(),
            Some("second-header")
        );
        assert_eq!(find(&[b"session="]), None);
        assert_eq!(find(&[b"a=1;b"]), None);
        assert_eq!(find(&[b""]), None);
        assert_eq!(find(&[]), None);
    }

    #[test]
    fn the_first_usable_cookie_of_the_name_wins() {
        assert_eq!(
            find(&[b"session=refused; session=good"]).as_deref(),
            Some("good")
        );
        assert_eq!(
            find(&[b"session=refused"]).as_deref(),
            Some(""),
            "sent, none usable"
        );
        // A first value that is not UTF-8 does not hide a valid second one.
        assert_eq!(
            find(&[b"session=\xff\xfe; session=good"]).as_deref(),
            Some("good")
        );
        assert_eq!(
            find(&[b"session=\xff\xfe", b"session=good"]).as_deref(),
            Some("good")
        );
        assert_eq!(find(&[b"session=\xff"]).as_deref(), Some(""));
        // Valid UTF-8 beyond ASCII reaches `usable`, which decides.
        assert_eq!(find(&["session=é".as_bytes()]).as_deref(), Some("é"));
    }

    #[test]
    fn cookie_values_are_exactly_the_rfc_6265_octets() {
        let octet = |b: u8| (0x21..0x7F).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\');
        for b in 0..=127u8 {
            let text = format!("ab{}cd", char::from(b));
            assert_eq!(is_cookie_value(&text), octet(b), "byte {b:#04x}");
        }
        assert!(!is_cookie_value("abcdefghijklmnopqré"));
    }
}
