use cookie::{Cookie, SameSite};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use std::time::Duration;

/// Cookie and loading options shared by a layer and its services.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    /// `None`: a browser-session cookie (no `Max-Age`), the seed's `max_age=0`.
    pub(crate) max_age: Option<Duration>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) autoload: bool,
}

/// Fourteen days, the default cookie lifetime.
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 60 * 60);

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "session".to_owned(),
            path: "/".to_owned(),
            domain: None,
            max_age: Some(DEFAULT_MAX_AGE),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            autoload: false,
        }
    }
}

impl Config {
    /// The value of this layer's cookie in the request, if the client sent one.
    pub(crate) fn cookie_value<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|header| find_cookie(header, &self.name))
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

    fn cookie<'c>(&'c self, value: &'c str) -> Cookie<'c> {
        let mut cookie = Cookie::new(self.name.as_str(), value);
        cookie.set_path(self.path.as_str());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.as_str());
        }
        cookie.set_secure(self.secure);
        cookie.set_http_only(self.http_only);
        cookie.set_same_site(self.same_site);
        cookie
    }

    /// The `Set-Cookie` value that stores `value` in the client.
    pub(crate) fn set_cookie(&self, value: &str) -> Option<HeaderValue> {
        let mut cookie = self.cookie(value);
        if let Some(max_age) = self.max_age {
            // Max-Age counts whole seconds; round up so a sub-second age never becomes the
            // `Max-Age=0` that deletes the cookie.
            let secs = max_age
                .as_secs()
                .saturating_add(u64::from(max_age.subsec_nanos() > 0));
            cookie.set_max_age(cookie::time::Duration::seconds(
                i64::try_from(secs).unwrap_or(i64::MAX),
            ));
        }
        HeaderValue::try_from(cookie.to_string()).ok()
    }

    /// The `Set-Cookie` value that removes the cookie from the client (same path and domain).
    pub(crate) fn expire_cookie(&self) -> Option<HeaderValue> {
        let mut cookie = self.cookie("");
        cookie.set_max_age(cookie::time::Duration::ZERO);
        HeaderValue::try_from(cookie.to_string()).ok()
    }
}

/// Find cookie `name` in one `Cookie` header value (`a=1; b=2`): its value, unquoted, or
/// `None` when absent or empty.
fn find_cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if key.trim() != name {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie_among_others() {
        assert_eq!(find_cookie("a=1; session=abc; b=2", "session"), Some("abc"));
        assert_eq!(find_cookie("session=abc", "session"), Some("abc"));
        assert_eq!(
            find_cookie("xsession=abc; session=def", "session"),
            Some("def")
        );
        assert_eq!(find_cookie("session=\"quoted\"", "session"), Some("quoted"));
        assert_eq!(find_cookie("session=", "session"), None);
        assert_eq!(find_cookie("a=1;b", "session"), None);
        assert_eq!(find_cookie("", "session"), None);
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
        let config = Config {
            domain: Some("example.com".to_owned()),
            max_age: Some(Duration::from_secs(60)),
            ..Config::default()
        };
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
        let browser_session = Config {
            max_age: None,
            ..Config::default()
        };
        let header = browser_session.set_cookie("abc").unwrap();
        assert!(!header.to_str().unwrap().contains("Max-Age"));
        assert!(!header.to_str().unwrap().contains("Expires"));
        let expired = config.expire_cookie().unwrap();
        assert!(expired.to_str().unwrap().contains("Max-Age=0"));
        assert!(expired.to_str().unwrap().contains("Domain=example.com"));
    }
}
