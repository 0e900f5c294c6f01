use crate::SessionMiddleware;
use crate::config::Config;
use ::cookie::SameSite;
use sessions_core::{Error, SessionBackend};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Adds sessions to a service, stored in backend `B`. Configuration only; see the
/// [crate docs](crate) for the behaviour.
///
/// Defaults: cookie `session`, path `/`, no domain, `Max-Age` 14 days, `Secure`, `HttpOnly`,
/// `SameSite=Lax`, `autoload` off.
pub struct SessionLayer<B> {
    pub(crate) backend: Arc<B>,
    /// What sessions are stored through: the backend, bound to the cookie's name where the
    /// backend binds its values to it (see [`SessionBackend::bind_cookie_name`]).
    pub(crate) sessions: Arc<dyn SessionBackend>,
    pub(crate) config: Arc<Config>,
}

impl<B> Clone for SessionLayer<B> {
    fn clone(&self) -> Self {
        SessionLayer {
            backend: Arc::clone(&self.backend),
            sessions: Arc::clone(&self.sessions),
            config: Arc::clone(&self.config),
        }
    }
}

impl<B> fmt::Debug for SessionLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("backend", &std::any::type_name::<B>())
            .field("config", &self.config)
            .finish()
    }
}

/// The backend as the layer's sessions use it: bound to the cookie's name (as sent, with any
/// `__Host-` prefix) when the backend binds values to names.
fn bound<B: SessionBackend>(backend: &Arc<B>, config: &Config) -> Arc<dyn SessionBackend> {
    backend
        .bind_cookie_name(&config.cookie_name)
        .unwrap_or_else(|| backend.clone())
}

/// The rules browsers hold a cookie's attributes to, checked on the whole configuration so
/// that the order of the setters does not matter: `SameSite=None` needs `Secure`; a name
/// starting with `__Secure-` needs `Secure`; one starting with `__Host-` (or the
/// [`with_host_prefix`](SessionLayer::with_host_prefix) option) needs `Secure`, `Path=/` and
/// no `Domain`. Browsers drop a cookie that breaks them without a word.
fn check_attributes(c: &Config) -> Result<(), Error> {
    let named = |prefix: &str| {
        c.name
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    };
    if c.same_site == SameSite::None && !c.secure {
        return Err(Error::Config(
            "SameSite=None requires Secure: browsers reject the cookie otherwise".to_owned(),
        ));
    }
    if (c.host_prefix || named("__Host-")) && (!c.secure || c.path != "/" || c.domain.is_some()) {
        return Err(Error::Config(
            "a __Host- cookie needs Secure, Path=/ and no Domain: browsers reject it otherwise"
                .to_owned(),
        ));
    }
    if named("__Secure-") && !c.secure {
        return Err(Error::Config(
            "a __Secure- cookie needs Secure: browsers reject it otherwise".to_owned(),
        ));
    }
    Ok(())
}

impl<B: SessionBackend> SessionLayer<B> {
    /// Sessions stored in `backend`, with the default options.
    pub fn new(backend: B) -> Self {
        SessionLayer::from_arc(Arc::new(backend))
    }

    /// Sessions stored in a backend that is already shared.
    pub fn from_arc(backend: Arc<B>) -> Self {
        let mut config = Config::default();
        config.policy.absolute = backend.default_absolute_timeout();
        SessionLayer {
            sessions: bound(&backend, &config),
            backend,
            config: Arc::new(config),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The limits, failure handling and loading this layer's sessions follow: what code
    /// outside a request (a background task reopening a session by id with
    /// `Session::with_policy`) needs to save a session as the layer would, its TTL included.
    pub fn policy(&self) -> sessions_core::Policy {
        self.config.policy
    }

    /// [`configure`](Self::configure), then check the combination of cookie attributes: the
    /// same rules whatever order the options were set in.
    fn try_configure(self, f: impl FnOnce(&mut Config)) -> Result<Self, Error> {
        let mut candidate = (*self.config).clone();
        f(&mut candidate);
        check_attributes(&candidate)?;
        Ok(self.configure(|c| *c = candidate))
    }

    fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.render();
        config.policy.absolute = config.absolute.or(self.backend.default_absolute_timeout());
        self.sessions = bound(&self.backend, config);
        self
    }

    /// Hand handlers their session already loaded (default: off, as in starsessions: handlers
    /// call `session.load().await`). The load happens when a handler takes the session (the
    /// axum extractor), so requests whose handlers never take it never reach the backend. A
    /// failed load answers 500 and logs a `tracing` error. A plain tower service reads the
    /// session from the request's extensions and calls `load` itself either way (a second
    /// `load` does nothing).
    #[must_use]
    pub fn with_autoload(self, autoload: bool) -> Self {
        self.configure(|c| c.autoload = autoload)
    }

    /// Autoload on chosen routes: requests whose path is one of `prefixes` or below it
    /// (`/account` covers `/account` and `/account/orders`, not `/accounts`) get their session
    /// loaded when a handler takes it, as [`with_autoload`](Self::with_autoload) does for all;
    /// requests on other routes keep the explicit `load().await`. starsessions'
    /// `SessionAutoloadMiddleware(paths=[...])`. The path is the one the client asked for
    /// (under `Router::nest`, axum's `OriginalUri`). Replaces the prefixes set before.
    ///
    /// # Errors
    ///
    /// A prefix that does not start with `/` is [`Error::Config`].
    pub fn with_autoload_paths<I, P>(self, prefixes: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        let prefixes: Vec<String> = prefixes.into_iter().map(Into::into).collect();
        if let Some(bad) = prefixes.iter().find(|p| !p.starts_with('/')) {
            return Err(Error::Config(format!(
                "{bad:?} is not a path prefix: it must start with `/`"
            )));
        }
        Ok(self.configure(|c| c.autoload_routes.prefixes = prefixes))
    }

    /// Autoload on routes matching regular expressions (the `regex` crate's syntax, each
    /// matched against the whole path, so anchor it: `^/shop/\d+$`), besides
    /// [`with_autoload_paths`](Self::with_autoload_paths). Replaces the patterns set before.
    /// Feature `regex`.
    ///
    /// # Errors
    ///
    /// A pattern that does not compile is [`Error::Config`], with the `regex` crate's message.
    #[cfg(feature = "regex")]
    pub fn with_autoload_patterns<I, P>(self, patterns: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let set = regex::RegexSet::new(patterns)
            .map_err(|e| Error::Config(format!("an autoload pattern does not compile: {e}")))?;
        Ok(self.configure(|c| c.autoload_routes.patterns = (!set.is_empty()).then_some(set)))
    }

    /// The cookie's name (default `session`).
    ///
    /// # Errors
    ///
    /// A name that is empty or holds characters a cookie name cannot (separators, spaces,
    /// control characters) is [`Error::Config`].
    pub fn with_cookie_name(self, name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !valid {
            return Err(Error::Config(format!(
                "{name:?} is not a valid cookie name: use letters, digits and `-_.!#$%&'*+^`|~`"
            )));
        }
        self.try_configure(|c| c.name = name)
    }

    /// The cookie's `Path` (default `/`). Requests outside it get no session: the browser
    /// would not send the cookie there, so the layer neither reads nor sets it.
    ///
    /// # Errors
    ///
    /// A path that does not start with `/`, or holds `;`, spaces, control characters or
    /// non-ASCII characters, is [`Error::Config`].
    pub fn with_path(self, path: impl Into<String>) -> Result<Self, Error> {
        let path = path.into();
        if !path.starts_with('/') || path.bytes().any(|b| b == b';' || !b.is_ascii_graphic()) {
            return Err(Error::Config(format!(
                "{path:?} is not a valid cookie path: it must start with `/` and hold only \
                 visible ASCII without `;` (percent-encode anything else, as request paths are)"
            )));
        }
        self.try_configure(|c| c.path = path)
    }

    /// The cookie's `Domain` (default: none, so only the host that set it receives it).
    /// Setting `example.com` shares the session with every subdomain, such as
    /// `app.example.com`.
    ///
    /// # Errors
    ///
    /// A domain holding `;`, spaces or control characters is [`Error::Config`].
    pub fn with_domain(self, domain: impl Into<String>) -> Result<Self, Error> {
        let domain = domain.into();
        if domain.is_empty() || domain.bytes().any(|b| b == b';' || !b.is_ascii_graphic()) {
            return Err(Error::Config(format!(
                "{domain:?} is not a valid cookie domain"
            )));
        }
        self.try_configure(|c| c.domain = Some(domain))
    }

    /// The cookie's `Max-Age` (default 14 days), also the stored record's TTL, renewed on
    /// every save. Zero makes a browser-session cookie: no `Max-Age`, so the browser drops it
    /// when it closes; records then get no TTL from the cookie.
    #[must_use]
    pub fn with_max_age(self, max_age: Duration) -> Self {
        self.configure(|c| c.max_age = (!max_age.is_zero()).then_some(max_age))
    }

    /// End sessions not used for `idle` (default: no idle limit). Activity extends it: each
    /// save records the time, and an unchanged session is saved again once
    /// [`with_refresh_after`](SessionLayer::with_refresh_after) has passed
    /// (default: half of `idle`), so reads cause at most one refresh per interval. Enforced on
    /// the server for every backend; the stored record's TTL never exceeds it.
    #[must_use]
    pub fn with_idle_timeout(self, idle: Duration) -> Self {
        self.configure(|c| c.idle = (!idle.is_zero()).then_some(idle))
    }

    /// End sessions `lifetime` after they were created, however active (default: no absolute
    /// limit, except the backend's own default: the cookie backend's 30 days, since nothing
    /// on the server can revoke a copied cookie). Never extended; `regenerate_id` keeps the
    /// creation time.
    #[must_use]
    pub fn with_absolute_timeout(self, lifetime: Duration) -> Self {
        self.configure(|c| c.absolute = (!lifetime.is_zero()).then_some(lifetime))
    }

    /// How long after its last save an unchanged session is refreshed, when an idle timeout
    /// is set (default: half of it).
    #[must_use]
    pub fn with_refresh_after(self, after: Duration) -> Self {
        self.configure(|c| c.refresh_after = Some(after))
    }

    /// Give new sessions a short first lifetime on the server (default: none, new sessions
    /// get the full lifetime at once). A new session's record lives at most `first` until
    /// its client sends the cookie back; that request saves it once more with the full
    /// lifetime (one extra write, once per session). Sessions nobody comes back to (a flood of
    /// anonymous requests to a page that writes the session, a crawler) then leave no
    /// long-lived keys or rows, and the memory backend evicts them before sessions whose
    /// clients came back.
    ///
    /// The trade-off: a client that comes back only after `first` finds its session gone
    /// and starts a fresh one. Choose `first` longer than the gap between a visitor's first
    /// two requests (minutes, not seconds).
    #[must_use]
    pub fn with_probation(self, first: Duration) -> Self {
        self.configure(|c| c.probation = (!first.is_zero()).then_some(first))
    }

    /// What a storage failure does: fail closed (default: `load()` returns the error, a
    /// failed save is a 500) or fail open (`true`: the request goes on with an empty session
    /// that is never saved, and a `tracing` warning is logged).
    #[must_use]
    pub fn with_fail_open(self, fail_open: bool) -> Self {
        self.configure(|c| c.fail_open = fail_open)
    }

    /// Name the cookie `__Host-<name>`: browsers then only accept it with `Secure`,
    /// `Path=/` and no `Domain`, so no subdomain or plain-HTTP page can plant or shadow it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the layer has a domain, a path other than `/`, or `Secure` off.
    pub fn with_host_prefix(self) -> Result<Self, Error> {
        self.try_configure(|c| c.host_prefix = true)
    }

    /// The `Secure` attribute (default on: the cookie travels over HTTPS only). Turn it off
    /// for plain-HTTP development only.
    ///
    /// # Errors
    ///
    /// Turning `Secure` off is [`Error::Config`] when the layer has `SameSite=None` or the
    /// `__Host-` prefix, which browsers only accept with `Secure`: the same error whichever
    /// option was set first.
    pub fn with_secure(self, secure: bool) -> Result<Self, Error> {
        self.try_configure(|c| c.secure = secure)
    }

    /// The `HttpOnly` attribute (default on: scripts in the page cannot read the cookie).
    #[must_use]
    pub fn with_http_only(self, http_only: bool) -> Self {
        self.configure(|c| c.http_only = http_only)
    }

    /// The `SameSite` attribute (default `Lax`).
    ///
    /// # Errors
    ///
    /// `SameSite=None` without `Secure` is [`Error::Config`]: browsers reject such cookies.
    pub fn with_same_site(self, same_site: SameSite) -> Result<Self, Error> {
        self.try_configure(|c| c.same_site = same_site)
    }
}

#[cfg(feature = "cookie-backend")]
impl SessionLayer<sessions_cookie::CookieBackend> {
    /// Signed cookie sessions: the whole session travels in the cookie, signed with
    /// HMAC-SHA256 under a key derived from `secret` (starsessions' `secret_key=`, its
    /// default backend). Nothing is stored on the server.
    ///
    /// For sessions the client cannot read, build the layer on
    /// [`CookieBackend::private`](sessions_cookie::CookieBackend::private) instead.
    ///
    /// # Errors
    ///
    /// A secret shorter than 32 bytes is [`Error::Config`], with advice on making one.
    pub fn with_secret_key(secret: impl AsRef<[u8]>) -> Result<Self, Error> {
        Ok(SessionLayer::new(sessions_cookie::CookieBackend::signed(
            secret.as_ref(),
        )?))
    }
}

impl<S, B> Layer<S> for SessionLayer<B> {
    type Service = SessionMiddleware<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionMiddleware {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessions_memory::InMemoryBackend;

    #[test]
    fn every_option_reaches_the_policy_the_sessions_follow() {
        let layer = SessionLayer::new(InMemoryBackend::new());
        assert!(!layer.config.policy.autoload);
        assert_eq!(
            layer.config.policy.max_age,
            Some(Duration::from_secs(14 * 86_400))
        );
        let layer = layer
            .with_autoload(true)
            .with_idle_timeout(Duration::from_secs(60))
            .with_absolute_timeout(Duration::from_secs(3_600))
            .with_refresh_after(Duration::from_secs(10))
            .with_fail_open(true)
            .with_max_age(Duration::ZERO);
        let policy = &layer.config.policy;
        assert!(policy.autoload, "a later option kept the earlier one");
        assert_eq!(policy.idle, Some(Duration::from_secs(60)));
        assert_eq!(policy.absolute, Some(Duration::from_secs(3_600)));
        assert_eq!(policy.refresh_after, Some(Duration::from_secs(10)));
        assert!(policy.fail_open);
        assert_eq!(
            policy.max_age, None,
            "max age zero: a browser-session cookie"
        );
    }

    fn layer() -> SessionLayer<InMemoryBackend> {
        SessionLayer::new(InMemoryBackend::new())
    }

    fn config_error<T>(result: Result<T, Error>) -> String {
        match result {
            Err(Error::Config(message)) => message,
            Err(other) => panic!("not a configuration error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn same_site_none_without_secure_is_refused_in_either_order() {
        let secure_first = config_error(
            layer()
                .with_secure(false)
                .and_then(|l| l.with_same_site(SameSite::None)),
        );
        let same_site_first = config_error(
            layer()
                .with_same_site(SameSite::None)
                .and_then(|l| l.with_secure(false)),
        );
        assert_eq!(secure_first, same_site_first);
        assert!(secure_first.contains("SameSite=None"), "{secure_first}");
    }

    #[test]
    fn prefixed_cookie_names_need_secure_in_either_order() {
        for name in ["__Host-id", "__Secure-id", "__host-id", "__SECURE-id"] {
            let name_first = config_error(
                layer()
                    .with_cookie_name(name)
                    .and_then(|l| l.with_secure(false)),
            );
            let secure_first = config_error(
                layer()
                    .with_secure(false)
                    .and_then(|l| l.with_cookie_name(name)),
            );
            assert_eq!(name_first, secure_first, "{name}");
        }
        assert!(
            layer().with_cookie_name("__Secure-id").is_ok(),
            "Secure is on by default"
        );
        assert!(layer().with_cookie_name("__Host-id").is_ok());
    }

    #[test]
    fn a_host_prefixed_name_needs_path_slash_and_no_domain_in_either_order() {
        let host = || layer().with_cookie_name("__Host-id");
        assert!(host().and_then(|l| l.with_path("/admin")).is_err());
        assert!(
            layer()
                .with_path("/admin")
                .and_then(|l| l.with_cookie_name("__Host-id"))
                .is_err()
        );
        assert!(host().and_then(|l| l.with_domain("example.com")).is_err());
        assert!(
            layer()
                .with_domain("example.com")
                .and_then(|l| l.with_cookie_name("__Host-id"))
                .is_err()
        );
        assert!(
            layer()
                .with_domain("example.com")
                .and_then(|l| l.with_cookie_name("__Secure-id"))
                .is_ok(),
            "__Secure- allows a Domain"
        );
    }

    #[test]
    fn host_prefix_without_secure_is_refused_in_either_order() {
        let secure_first = config_error(
            layer()
                .with_secure(false)
                .and_then(SessionLayer::with_host_prefix),
        );
        let prefix_first = config_error(
            layer()
                .with_host_prefix()
                .and_then(|l| l.with_secure(false)),
        );
        assert_eq!(secure_first, prefix_first);
    }
}
