use cookie::SameSite;
use http::header::{COOKIE, HeaderMap, HeaderValue};
use sessions_core::Policy;
use std::time::Duration;

/// Cookie and loading options shared by a layer and its services.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    /// `None`: a browser-session cookie (no `Max-Age`), starsessions' `max_age=0`.
    pub(crate) max_age: Option<Duration>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) autoload: bool,
    pub(crate) idle: Option<Duration>,
    pub(crate) absolute: Option<Duration>,
    pub(crate) refresh_after: Option<Duration>,
    pub(crate) fail_open: bool,
    /// Prefix the name with `__Host-` (and keep `Secure`, `Path=/`, no `Domain`).
    pub(crate) host_prefix: bool,
    /// The cookie's name as sent: `name`, with `__Host-` in front when asked.
    pub(crate) cookie_name: String,
    /// `; Path=/; Max-Age=...; Secure; ...`: the attributes, rendered once per configuration.
    attributes: String,
    /// The whole `Set-Cookie` value that removes the cookie, rendered once.
    removal: HeaderValue,
    /// The limits, failure handling and loading every session of the layer follows.
    pub(crate) policy: Policy,
}

/// Fourteen days, the default cookie lifetime.
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 60 * 60);

impl Default for Config {
    fn default() -> Self {
        let mut config = Config {
            name: "session".to_owned(),
            path: "/".to_owned(),
            domain: None,
            max_age: Some(DEFAULT_MAX_AGE),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            autoload: false,
            idle: None,
            absolute: None,
            refresh_after: None,
            fail_open: false,
            host_prefix: false,
            cookie_name: String::new(),
            attributes: String::new(),
            removal: HeaderValue::from_static(""),
            policy: Policy::default(),
        };
        config.render();
        config
    }
}

/// Whether `value` may stand as a cookie value unquoted: only RFC 6265 `cookie-octet`s
/// (visible ASCII but `"`, `,`, `;` and `\\`). A backend returning anything else (a `;` would
/// smuggle in attributes) is refused.
fn is_cookie_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

impl Config {
    /// Render the attribute strings and the policy; call after every change of the options.
    /// The layer's setters validate names, paths and domains, so the rendered text is a valid
    /// header.
    pub(crate) fn render(&mut self) {
        let mut policy = Policy::new(self.max_age);
        policy.idle = self.idle;
        policy.absolute = self.absolute;
        policy.refresh_after = self.refresh_after;
        policy.fail_open = self.fail_open;
        policy.autoload = self.autoload;
        self.policy = policy;
        self.cookie_name = if self.host_prefix {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        };
        let mut attributes = String::with_capacity(96);
        attributes.push_str("; Path=");
        attributes.push_str(&self.path);
        if let Some(domain) = &self.domain {
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        let flags = |out: &mut String| {
            if self.secure {
                out.push_str("; Secure");
            }
            if self.http_only {
                out.push_str("; HttpOnly");
            }
            out.push_str(match self.same_site {
                SameSite::Strict => "; SameSite=Strict",
                SameSite::Lax => "; SameSite=Lax",
                SameSite::None => "; SameSite=None",
            });
        };
        let mut removal = format!("{}={attributes}; Max-Age=0", self.cookie_name);
        flags(&mut removal);
        if let Some(max_age) = self.max_age {
            // Max-Age counts whole seconds; round up so a sub-second age never becomes the
            // `Max-Age=0` that deletes the cookie.
            let secs = max_age
                .as_secs()
                .saturating_add(u64::from(max_age.subsec_nanos() > 0));
            attributes.push_str("; Max-Age=");
            attributes.push_str(&secs.to_string());
        }
        flags(&mut attributes);
        self.attributes = attributes;
        self.removal = HeaderValue::try_from(removal)
            .unwrap_or_else(|_| HeaderValue::from_static("session=; Max-Age=0"));
    }

    /// The value of this layer's cookie in the request, if the client sent one.
    pub(crate) fn cookie_value<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        headers
            .get_all(COOKIE)
            .iter()
            .find_map(|value| find_cookie(value.as_bytes(), &self.cookie_name))
    }

    /// Whether a request for `path` is inside the cookie's path (RFC 6265, section 5.1.4).
    pub(crate) fn covers(&self, path: &str) -> bool {
        let cookie_path = self.path.as_str();
        cookie_path == "/"
            || path == cookie_path
            || (path.starts_with(cookie_path)
                && (cookie_path.ends_with('/')
                    || path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
    }

    /// The `Set-Cookie` value that stores `value` in the client; `None` when `value` cannot
    /// be a cookie value.
    pub(crate) fn set_cookie(&self, value: &str) -> Option<HeaderValue> {
        if !is_cookie_value(value) {
            return None;
        }
        let mut header =
            String::with_capacity(self.cookie_name.len() + 1 + value.len() + self.attributes.len());
        header.push_str(&self.cookie_name);
        header.push('=');
        header.push_str(value);
        header.push_str(&self.attributes);
        HeaderValue::try_from(header).ok()
    }

    /// The `Set-Cookie` value that removes the cookie from the client (same path and domain).
    pub(crate) fn expire_cookie(&self) -> HeaderValue {
        self.removal.clone()
    }
}

/// Find cookie `name` in one `Cookie` header value (`a=1; b=2`): its value, unquoted, or
/// `None` when absent, empty or not UTF-8.
fn find_cookie<'h>(header: &'h [u8], name: &str) -> Option<&'h str> {
    let name = name.as_bytes();
    let mut rest = header;
    loop {
        while let [b' ' | b'\t', tail @ ..] = rest {
            rest = tail;
        }
        let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
        let (pair, tail) = rest.split_at(end);
        if pair.len() > name.len() && pair[name.len()] == b'=' && pair.starts_with(name) {
            let value = pair[name.len() + 1..].trim_ascii();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            if !value.is_empty() {
                return std::str::from_utf8(value).ok();
            }
        }
        rest = tail.get(1..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie_among_others() {
        assert_eq!(
            find_cookie(b"a=1; session=abc; b=2", "session"),
            Some("abc")
        );
        assert_eq!(find_cookie(b"session=abc", "session"), Some("abc"));
        assert_eq!(
            find_cookie(b"xsession=abc; session=def", "session"),
            Some("def")
        );
        assert_eq!(
            find_cookie(b"session=\"quoted\"", "session"),
            Some("quoted")
        );
        assert_eq!(find_cookie(b"session=", "session"), None);
        assert_eq!(find_cookie(b"a=1;b", "session"), None);
        assert_eq!(find_cookie(b"", "session"), None);
    }

    #[test]
    fn cookie_values_are_exactly_the_rfc_6265_octets() {
        let octet = |b: u8| (0x21..0x7F).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\');
        for len in [1, 16, 17, 40] {
            for at in [0, len / 2, len - 1] {
                for b in 0..=127u8 {
                    let mut value = vec![b'a'; len];
                    value[at] = b;
                    let text = std::str::from_utf8(&value).unwrap();
                    assert_eq!(
                        is_cookie_value(text),
                        octet(b),
                        "byte {b:#04x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(!is_cookie_value("abcdefghijklmnopqré"));
    }

    #[test]
    fn path_matching_follows_rfc_6265() {
        let admin = Config {
            path: "/admin".to_owned(),
            ..Config::default()
        };
        assert!(admin.covers("/admin"));
        assert!(admin.covers("/admin/users"));
        assert!(!admin.covers("/administrator"));
        assert!(!admin.covers("/"));
        assert!(!admin.covers("/other/admin"));
        let slash = Config {
            path: "/admin/".to_owned(),
            ..Config::default()
        };
        assert!(slash.covers("/admin/x"));
        assert!(!slash.covers("/admin"));
        assert!(Config::default().covers("/anything"));
    }

    #[test]
    fn set_cookie_carries_every_attribute() {
        let mut config = Config {
            domain: Some("example.com".to_owned()),
            max_age: Some(Duration::from_secs(60)),
            ..Config::default()
        };
        config.render();
        let header = config.set_cookie("abc").unwrap();
        let header = header.to_str().unwrap();
        for part in [
            "session=abc",
            "Path=/",
            "Domain=example.com",
            "Max-Age=60",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
        ] {
            assert!(header.contains(part), "{header} lacks {part}");
        }
        let mut browser_session = Config {
            max_age: None,
            ..Config::default()
        };
        browser_session.render();
        let header = browser_session.set_cookie("abc").unwrap();
        assert!(!header.to_str().unwrap().contains("Max-Age"));
        assert!(!header.to_str().unwrap().contains("Expires"));
        let expired = config.expire_cookie();
        assert!(expired.to_str().unwrap().contains("Max-Age=0"));
        assert!(expired.to_str().unwrap().contains("Domain=example.com"));
    }
}
