use crate::cookie::Rendered;
use ::cookie::SameSite;
use http::header::HeaderValue;
use sessionkit_core::Clock;
use sessionkit_core::adapter::Policy;
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
    /// Paths whose requests get their session autoloaded, besides `autoload` for all.
    pub(crate) autoload_routes: AutoloadRoutes,
    pub(crate) idle: Option<Duration>,
    pub(crate) absolute: Option<Duration>,
    pub(crate) refresh_after: Option<Duration>,
    pub(crate) fail_open: bool,
    pub(crate) probation: Option<Duration>,
    pub(crate) clock: Clock,
    /// Prefix the name with `__Host-` (and keep `Secure`, `Path=/`, no `Domain`).
    pub(crate) host_prefix: bool,
    /// The cookie's name as sent: `name`, with `__Host-` in front when asked.
    pub(crate) cookie_name: String,
    /// The `Set-Cookie` attributes and removal cookie, rendered once per configuration.
    rendered: Rendered,
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
            autoload_routes: AutoloadRoutes::default(),
            idle: None,
            absolute: None,
            refresh_after: None,
            fail_open: false,
            probation: None,
            clock: Clock::system(),
            host_prefix: false,
            cookie_name: String::new(),
            rendered: Rendered::unrendered(),
            policy: Policy::default(),
        };
        config.render();
        config
    }
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
        policy.probation = self.probation;
        policy.clock = self.clock.clone();
        self.policy = policy;
        self.cookie_name = if self.host_prefix {
            format!("__Host-{}", self.name)
        } else {
            self.name.clone()
        };
        self.rendered = Rendered::new(self);
    }

    /// Whether a request for `path` gets its session loaded before the handler takes it.
    pub(crate) fn autoloads(&self, path: &str) -> bool {
        self.autoload || self.autoload_routes.matches(path)
    }

    /// Whether a request for `path` is inside the cookie's path (RFC 6265, section 5.1.4).
    pub(crate) fn covers(&self, path: &str) -> bool {
        path_within(path, &self.path)
    }

    /// The `Set-Cookie` value that stores `value` in the client for `max_age` (`None`: a
    /// browser-session cookie); `None` when `value` cannot be a cookie value.
    pub(crate) fn set_cookie(&self, value: &str, max_age: Option<Duration>) -> Option<HeaderValue> {
        if max_age == self.max_age {
            return self.rendered.set(&self.cookie_name, value);
        }
        // A session with a lifetime of its own: its attributes, rendered for this response.
        let own = Config {
            max_age,
            ..self.clone()
        };
        Rendered::new(&own).set(&self.cookie_name, value)
    }

    /// The `Set-Cookie` value that removes the cookie from the client (same path and domain).
    pub(crate) fn expire_cookie(&self) -> HeaderValue {
        self.rendered.removal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let header = config.set_cookie("abc", config.max_age).unwrap();
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
        let header = browser_session.set_cookie("abc", None).unwrap();
        assert!(!header.to_str().unwrap().contains("Max-Age"));
        assert!(!header.to_str().unwrap().contains("Expires"));
        let expired = config.expire_cookie();
        assert!(expired.to_str().unwrap().contains("Max-Age=0"));
        assert!(expired.to_str().unwrap().contains("Domain=example.com"));
    }
}

/// The routes whose sessions are autoloaded: path prefixes (matched on whole segments, as the
/// cookie path is) and regular expressions (matched against the whole path).
#[derive(Clone, Debug, Default)]
pub(crate) struct AutoloadRoutes {
    pub(crate) prefixes: Vec<String>,
    #[cfg(feature = "regex")]
    pub(crate) patterns: Option<regex::RegexSet>,
}

impl AutoloadRoutes {
    fn matches(&self, path: &str) -> bool {
        if self.prefixes.iter().any(|prefix| path_within(path, prefix)) {
            return true;
        }
        #[cfg(feature = "regex")]
        if let Some(patterns) = &self.patterns {
            return patterns.is_match(path);
        }
        false
    }
}

/// Whether `path` is `prefix` or below it (RFC 6265's path-match, section 5.1.4).
pub(crate) fn path_within(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}
