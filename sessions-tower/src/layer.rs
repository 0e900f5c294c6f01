use crate::SessionMiddleware;
use crate::config::Config;
use ::cookie::SameSite;
use sessionkit_core::adapter::{self, Context, Policy};
use sessionkit_core::{Clock, Error, LazySession, Session, SessionBackend};
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
    state: Arc<LayerState<B>>,
}

/// What a layer, its services and every session they make share.
pub(crate) struct LayerState<B> {
    backend: B,
    pub(crate) config: Config,
}

impl<B: SessionBackend> Context for LayerState<B> {
    fn backend(&self) -> &dyn SessionBackend {
        &self.backend
    }

    fn policy(&self) -> &Policy {
        &self.config.policy
    }
}

impl<B> Clone for SessionLayer<B> {
    fn clone(&self) -> Self {
        SessionLayer {
            state: Arc::clone(&self.state),
        }
    }
}

impl<B> fmt::Debug for SessionLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("backend", &std::any::type_name::<B>())
            .field("config", &self.state.config)
            .finish()
    }
}

/// The rules browsers hold a cookie's attributes to, checked on the whole configuration so
/// that the order of the setters does not matter: `SameSite=None` needs `Secure`; a name
/// starting with `__Secure-` needs `Secure`; one starting with `__Host-` (or the
/// [`with_host_prefix`](SessionLayerBuilder::with_host_prefix) option) needs `Secure`, `Path=/` and
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

/// The rules each value is held to, whatever the others are.
fn check_values(c: &Config) -> Result<(), Error> {
    let name = &c.name;
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !valid_name {
        return Err(Error::Config(format!(
            "{name:?} is not a valid cookie name: use letters, digits and `-_.!#$%&'*+^`|~`"
        )));
    }
    let path = &c.path;
    if !path.starts_with('/') || path.bytes().any(|b| b == b';' || !b.is_ascii_graphic()) {
        return Err(Error::Config(format!(
            "{path:?} is not a valid cookie path: it must start with `/` and hold only \
             visible ASCII without `;` (percent-encode anything else, as request paths are)"
        )));
    }
    if let Some(domain) = &c.domain {
        if domain.is_empty() || domain.bytes().any(|b| b == b';' || !b.is_ascii_graphic()) {
            return Err(Error::Config(format!(
                "{domain:?} is not a valid cookie domain"
            )));
        }
    }
    if let Some(bad) = c
        .autoload_routes
        .prefixes
        .iter()
        .find(|p| !p.starts_with('/'))
    {
        return Err(Error::Config(format!(
            "{bad:?} is not an autoload path prefix: it must start with `/`"
        )));
    }
    Ok(())
}

impl<B: SessionBackend> SessionLayer<B> {
    /// Sessions stored in `backend`, with the default options. For other options, start from
    /// [`builder`](Self::builder).
    pub fn new(backend: B) -> Self {
        SessionLayer::with_config(backend, Config::default())
    }

    /// Configure a layer storing sessions in `backend`: set the options on the builder, then
    /// [`build`](SessionLayerBuilder::build) checks them all at once.
    ///
    /// ```
    /// # use sessionkit_memory::InMemoryBackend; use sessionkit_tower::{Error, SameSite, SessionLayer};
    /// # fn main() -> Result<(), Error> {
    /// let layer = SessionLayer::builder(InMemoryBackend::new())
    ///     .with_cookie_name("id")
    ///     .with_same_site(SameSite::Strict)
    ///     .with_autoload(true)
    ///     .build()?;
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn builder(backend: B) -> SessionLayerBuilder<B> {
        SessionLayerBuilder {
            backend,
            config: Config::default(),
            max_per_user: None,
            #[cfg(feature = "regex")]
            patterns: Vec::new(),
        }
    }

    /// The layer of a configuration that has been checked: the attribute text rendered once.
    /// A cookie backend is bound to the layer's cookie name (as sent, with any `__Host-`
    /// prefix), so that its values open under this cookie only, and takes the layer's
    /// absolute timeout in place of its own.
    #[cfg_attr(not(feature = "cookie-backend"), allow(unused_mut))]
    fn with_config(mut backend: B, mut config: Config) -> Self {
        config.render();
        #[cfg(feature = "cookie-backend")]
        if let Some(cookie) = (&mut backend as &mut dyn std::any::Any)
            .downcast_mut::<sessionkit_cookie::CookieBackend>()
        {
            cookie.bind_to_layer(&config.cookie_name, config.absolute, &config.clock);
        }
        SessionLayer {
            state: Arc::new(LayerState { backend, config }),
        }
    }

    /// The backend: for what the application asks of it directly, such as an admin ending
    /// every session of a user.
    pub fn backend(&self) -> &B {
        &self.state.backend
    }

    /// A layer for routes whose requests of one session must run one at a time, across
    /// processes (a read-modify-write of one key: a counter, a cart, a one-time token):
    /// see [`SessionLockLayer`](crate::SessionLockLayer). Put it on those routes with
    /// `route_layer`, inside this layer:
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use sessionkit_memory::InMemoryBackend;
    /// use sessionkit_tower::{Error, Session, SessionLayer};
    /// use std::time::Duration;
    ///
    /// async fn add_to_cart(session: Session) -> Result<String, Error> {
    ///     let items: u32 = session.get("items")?.unwrap_or(0) + 1;
    ///     session.insert("items", items)?;
    ///     Ok(items.to_string())
    /// }
    ///
    /// let sessions = SessionLayer::new(InMemoryBackend::new());
    /// let app: Router = Router::new()
    ///     .route("/cart", post(add_to_cart))
    ///     .route_layer(sessions.lock()?.with_lease(Duration::from_secs(5)))
    ///     .layer(sessions);
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a backend that cannot lock (the cookie backend: it keeps
    /// nothing the requests of a session share).
    pub fn lock(&self) -> Result<crate::SessionLockLayer, Error> {
        self.state.backend.check_locking()?;
        Ok(crate::SessionLockLayer::new())
    }

    /// Open the session stored under `id` outside a request, under this layer's limits:
    /// work that outlives a response (a task the handler spawned, a job that finishes
    /// later) and must change the session. Save it with [`save`](Self::save). A session
    /// that no longer exists opens empty, with no [`id`](Session::id); saving it would store
    /// a session no client can reach, so check first.
    ///
    /// ```
    /// # use sessionkit_memory::InMemoryBackend; use sessionkit_tower::{Error, SessionLayer};
    /// async fn report_ready(layer: SessionLayer<InMemoryBackend>, id: String) -> Result<(), Error> {
    ///     let session = layer.open(&id).await?;
    ///     if session.id().is_some() {
    ///         session.insert("report", "ready")?;
    ///         layer.save(&session).await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    ///
    /// (With the cookie backend the session travels in the cookie, which has left with the
    /// response already: such changes cannot reach the client.)
    ///
    /// # Errors
    ///
    /// What the backend returns when the read fails.
    pub async fn open(&self, id: &str) -> Result<Session, Error> {
        let context: Arc<dyn Context> = self.state.clone();
        adapter::session(context, Some(Arc::from(id))).load().await
    }

    /// Save a session [opened](Self::open) outside a request, as the layer saves one with
    /// its response. A session is saved once: later changes are [`Error::Committed`].
    ///
    /// # Errors
    ///
    /// What the backend returns when the save fails; [`Error::Committed`] for a session
    /// saved already (a request's session is saved by the layer, with its response).
    pub async fn save(&self, session: &Session) -> Result<(), Error> {
        adapter::commit(&LazySession::from(session.clone()))
            .await
            .map(|_| ())
    }
}

/// The options of a [`SessionLayer`], from [`SessionLayer::builder`]. Setting an option never
/// fails; [`build`](Self::build) checks the whole configuration, so the order of the setters
/// does not matter.
///
/// Defaults: cookie `session`, path `/`, no domain, `Max-Age` 14 days, `Secure`, `HttpOnly`,
/// `SameSite=Lax`, `autoload` off, no idle or absolute limit (the cookie backend keeps its own),
/// fail closed.
#[must_use = "a builder makes no layer until `build()`"]
pub struct SessionLayerBuilder<B> {
    backend: B,
    config: Config,
    max_per_user: Option<usize>,
    /// The autoload patterns as given: compiled, and so checked, by `build`.
    #[cfg(feature = "regex")]
    patterns: Vec<String>,
}

impl<B: Clone> Clone for SessionLayerBuilder<B> {
    fn clone(&self) -> Self {
        SessionLayerBuilder {
            backend: self.backend.clone(),
            config: self.config.clone(),
            max_per_user: self.max_per_user,
            #[cfg(feature = "regex")]
            patterns: self.patterns.clone(),
        }
    }
}

impl<B> fmt::Debug for SessionLayerBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .field("backend", &std::any::type_name::<B>())
            .field("config", &self.config)
            .finish()
    }
}

impl<B: SessionBackend> SessionLayerBuilder<B> {
    /// The layer, once every option has been checked.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], saying what to change, when:
    /// - the cookie name is empty or holds characters a cookie name cannot (separators,
    ///   spaces, control characters);
    /// - the path does not start with `/`, or holds `;`, spaces, control characters or
    ///   non-ASCII characters; the domain is empty or holds `;`, spaces or control characters;
    /// - an autoload path prefix does not start with `/`, or an autoload pattern does not
    ///   compile;
    /// - the attributes break a rule browsers hold cookies to, which they would enforce by
    ///   dropping the cookie without a word: `SameSite=None` without `Secure`, a `__Secure-`
    ///   name without `Secure`, a `__Host-` name (or
    ///   [`with_host_prefix`](Self::with_host_prefix)) without `Secure`, with a path other
    ///   than `/`, or with a domain.
    pub fn build(mut self) -> Result<SessionLayer<B>, Error> {
        #[allow(unused_mut)]
        let mut config = self.config;
        check_values(&config)?;
        check_attributes(&config)?;
        if let Some(max) = self.max_per_user {
            self.backend
                .limit_sessions_per_user(max)
                .map_err(|e| Error::Config(format!("with_max_sessions_per_user({max}): {e}")))?;
        }
        #[cfg(feature = "regex")]
        {
            let set = regex::RegexSet::new(&self.patterns)
                .map_err(|e| Error::Config(format!("an autoload pattern does not compile: {e}")))?;
            config.autoload_routes.patterns = (!set.is_empty()).then_some(set);
        }
        Ok(SessionLayer::with_config(self.backend, config))
    }

    /// Load every request's session before the inner service runs (default: off, as in
    /// starsessions: nothing is read until code asks). Handlers that take [`Session`] get it
    /// loaded either way; autoload reads it also for routes that don't take it, and for
    /// middleware and plain tower services that hold the [`LazySession`]. A failed load
    /// answers an empty 500 and logs a `tracing` error before the inner service runs.
    pub fn with_autoload(mut self, autoload: bool) -> Self {
        self.config.autoload = autoload;
        self
    }

    /// Autoload on chosen routes: requests whose path is one of `prefixes` or below it
    /// (`/account` covers `/account` and `/account/orders`, not `/accounts`) get their session
    /// loaded before the inner service runs, as [`with_autoload`](Self::with_autoload) does
    /// for all; starsessions' `SessionAutoloadMiddleware(paths=[...])`. The path is the one
    /// the client asked for (under `Router::nest`, axum's `OriginalUri`). Replaces the
    /// prefixes set before. Each must start with `/` ([`build`](Self::build) checks).
    pub fn with_autoload_paths<I, P>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.config.autoload_routes.prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Autoload on routes matching regular expressions (the `regex` crate's syntax, each
    /// matched against the whole path, so anchor it: `^/shop/\d+$`), besides
    /// [`with_autoload_paths`](Self::with_autoload_paths). Replaces the patterns set before.
    /// [`build`](Self::build) compiles them. Feature `regex`.
    #[cfg(feature = "regex")]
    pub fn with_autoload_patterns<I, P>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.patterns = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// The cookie's name (default `session`): letters, digits and `-_.!#$%&'*+^`|~`.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The cookie's `Path` (default `/`). Requests outside it get no session: the browser
    /// would not send the cookie there, so the layer neither reads nor sets it.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// The cookie's `Domain` (default: none, so only the host that set it receives it).
    /// Setting `example.com` shares the session with every subdomain, such as
    /// `app.example.com`.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.config.domain = Some(domain.into());
        self
    }

    /// The cookie's `Max-Age` (default 14 days), also the stored record's TTL, renewed on
    /// every save. Zero makes a browser-session cookie: no `Max-Age`, so the browser drops it
    /// when it closes; records then get no TTL from the cookie.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.config.max_age = (!max_age.is_zero()).then_some(max_age);
        self
    }

    /// End sessions not used for `idle` (default: no idle limit). Activity extends it: each
    /// save records the time, and an unchanged session is saved again once
    /// [`with_refresh_after`](Self::with_refresh_after) has passed
    /// (default: half of `idle`), so reads cause at most one refresh per interval. Enforced on
    /// the server for every backend; the stored record's TTL never exceeds it.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.config.idle = (!idle.is_zero()).then_some(idle);
        self
    }

    /// End sessions `lifetime` after they were created, however active (default: no absolute
    /// limit, except the cookie backend's own, 30 days by default, since nothing on the server
    /// can revoke a copied cookie; this setting replaces it). Never extended; `regenerate_id` keeps the
    /// creation time.
    pub fn with_absolute_timeout(mut self, lifetime: Duration) -> Self {
        self.config.absolute = (!lifetime.is_zero()).then_some(lifetime);
        self
    }

    /// How long after its last save an unchanged session is refreshed, when an idle timeout
    /// is set (default: half of it).
    pub fn with_refresh_after(mut self, after: Duration) -> Self {
        self.config.refresh_after = Some(after);
        self
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
    pub fn with_probation(mut self, first: Duration) -> Self {
        self.config.probation = (!first.is_zero()).then_some(first);
        self
    }

    /// Measure every time limit against `clock` instead of the system clock. Tests give the
    /// layer and the backend one [manual](Clock::manual) clock and
    /// [advance](Clock::advance) it instead of sleeping; a cookie backend bound to the layer
    /// reads the layer's clock.
    ///
    /// ```
    /// use sessionkit_tower::{Clock, SessionLayer};
    /// use sessionkit_memory::InMemoryBackend;
    /// use std::time::Duration;
    ///
    /// let clock = Clock::manual_from_now();
    /// let layer = SessionLayer::builder(InMemoryBackend::new().with_clock(clock.clone()))
    ///     .with_idle_timeout(Duration::from_secs(30 * 60))
    ///     .with_clock(clock.clone())
    ///     .build();
    /// // ... a request logs in; then half an hour passes without one:
    /// clock.advance(Duration::from_secs(30 * 60));
    /// ```
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Keep at most `max` sessions per user (devices logged in at once): binding a session
    /// beyond it (a login, [`Session::set_user`]) ends the user's least recently used other
    /// sessions in the same step; their next request starts afresh. Needs a backend with an
    /// index of sessions by user (memory, Redis, SQL): [`build`](Self::build) refuses it for
    /// the cookie backend. A `max` of 0 is taken as 1.
    pub fn with_max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_per_user = Some(max.max(1));
        self
    }

    /// What a storage failure does: fail closed (default: `load()` returns the error, a
    /// failed save is a 500) or fail open (`true`: the request goes on with an empty session
    /// that is never saved, and a `tracing` warning is logged).
    pub fn with_fail_open(mut self, fail_open: bool) -> Self {
        self.config.fail_open = fail_open;
        self
    }

    /// Name the cookie `__Host-<name>`: browsers then only accept it with `Secure`,
    /// `Path=/` and no `Domain`, so no subdomain or plain-HTTP page can plant or shadow it.
    pub fn with_host_prefix(mut self) -> Self {
        self.config.host_prefix = true;
        self
    }

    /// The `Secure` attribute (default on: the cookie travels over HTTPS only). Turn it off
    /// for plain-HTTP development only: `SameSite=None` and the `__Host-` and `__Secure-`
    /// prefixes need it.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.config.secure = secure;
        self
    }

    /// The `HttpOnly` attribute (default on: scripts in the page cannot read the cookie).
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.config.http_only = http_only;
        self
    }

    /// The `SameSite` attribute (default `Lax`). `None` needs `Secure`.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.config.same_site = same_site;
        self
    }
}

#[cfg(feature = "cookie-backend")]
impl SessionLayer<sessionkit_cookie::CookieBackend> {
    /// Signed cookie sessions: the whole session travels in the cookie, signed with
    /// HMAC-SHA256 under a key derived from `secret` (starsessions' `secret_key=`, its
    /// default backend). Nothing is stored on the server.
    ///
    /// For sessions the client cannot read, build the layer on
    /// [`CookieBackend::private`](sessionkit_cookie::CookieBackend::private) instead.
    ///
    /// # Errors
    ///
    /// A secret shorter than 32 bytes is [`Error::Config`], with advice on making one.
    pub fn with_secret_key(secret: impl AsRef<[u8]>) -> Result<Self, Error> {
        Ok(SessionLayer::new(sessionkit_cookie::CookieBackend::signed(
            secret.as_ref(),
        )?))
    }
}

impl<S, B> Layer<S> for SessionLayer<B> {
    type Service = SessionMiddleware<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionMiddleware::new(inner, Arc::clone(&self.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionkit_memory::InMemoryBackend;

    fn builder() -> SessionLayerBuilder<InMemoryBackend> {
        SessionLayer::builder(InMemoryBackend::new())
    }

    #[cfg(feature = "cookie-backend")]
    #[test]
    fn a_per_user_limit_is_refused_at_build_for_the_cookie_backend() {
        let cookie = sessionkit_cookie::CookieBackend::signed([7u8; 32]).unwrap();
        let refused = SessionLayer::builder(cookie)
            .with_max_sessions_per_user(3)
            .build();
        match refused {
            Err(Error::Config(why)) => {
                assert!(why.contains("with_max_sessions_per_user(3)"), "{why}");
                assert!(why.contains("server-side backend"), "{why}");
            }
            other => panic!(
                "expected a configuration error, got {:?}",
                other.map(|_| ())
            ),
        }
        assert!(builder().with_max_sessions_per_user(3).build().is_ok());
    }

    #[test]
    fn every_option_reaches_the_policy_the_sessions_follow() {
        let layer = SessionLayer::new(InMemoryBackend::new());
        assert!(!layer.state.config.autoloads("/"));
        assert_eq!(
            layer.state.config.policy.max_age,
            Some(Duration::from_secs(14 * 86_400))
        );
        let layer = builder()
            .with_autoload(true)
            .with_idle_timeout(Duration::from_secs(60))
            .with_absolute_timeout(Duration::from_secs(3_600))
            .with_refresh_after(Duration::from_secs(10))
            .with_fail_open(true)
            .with_max_age(Duration::ZERO)
            .build()
            .unwrap();
        let policy = &layer.state.config.policy;
        assert!(
            layer.state.config.autoloads("/"),
            "a later option kept the earlier one"
        );
        assert_eq!(policy.idle, Some(Duration::from_secs(60)));
        assert_eq!(policy.absolute, Some(Duration::from_secs(3_600)));
        assert_eq!(policy.refresh_after, Some(Duration::from_secs(10)));
        assert!(policy.fail_open);
        assert_eq!(
            policy.max_age, None,
            "max age zero: a browser-session cookie"
        );
    }

    #[test]
    fn the_built_cookie_carries_the_options() {
        let layer = builder()
            .with_cookie_name("id")
            .with_path("/app")
            .with_domain("example.com")
            .with_same_site(SameSite::Strict)
            .with_http_only(false)
            .build()
            .unwrap();
        let header = layer
            .state
            .config
            .set_cookie("v", layer.state.config.max_age)
            .unwrap();
        let header = header.to_str().unwrap();
        for part in ["id=v", "Path=/app", "Domain=example.com", "SameSite=Strict"] {
            assert!(header.contains(part), "{header} lacks {part}");
        }
        assert!(!header.contains("HttpOnly"), "{header}");
        let host = builder().with_host_prefix().build().unwrap();
        assert_eq!(host.state.config.cookie_name, "__Host-session");
    }

    fn config_error<T>(result: Result<T, Error>) -> String {
        match result {
            Err(Error::Config(message)) => message,
            Err(other) => panic!("not a configuration error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn values_a_cookie_cannot_hold_are_refused_by_build() {
        for (what, bad) in [
            ("name", builder().with_cookie_name("")),
            ("name", builder().with_cookie_name("a b")),
            ("name", builder().with_cookie_name("a;b")),
            ("path", builder().with_path("admin")),
            ("path", builder().with_path("/a;b")),
            ("path", builder().with_path("/é")),
            ("domain", builder().with_domain("")),
            ("domain", builder().with_domain("a b.com")),
            ("prefix", builder().with_autoload_paths(["/ok", "account"])),
        ] {
            let message = config_error(bad.build());
            assert!(message.contains(what), "{what}: {message}");
        }
    }

    #[cfg(feature = "regex")]
    #[test]
    fn an_autoload_pattern_that_does_not_compile_is_refused_by_build() {
        let message = config_error(builder().with_autoload_patterns(["^/shop/(\\d+$"]).build());
        assert!(message.contains("autoload pattern"), "{message}");
        let layer = builder()
            .with_autoload_patterns([r"^/shop/\d+$"])
            .build()
            .unwrap();
        assert!(layer.state.config.autoloads("/shop/12"));
        assert!(!layer.state.config.autoloads("/shop/x"));
    }

    #[test]
    fn same_site_none_without_secure_is_refused_in_either_order() {
        let secure_first = config_error(
            builder()
                .with_secure(false)
                .with_same_site(SameSite::None)
                .build(),
        );
        let same_site_first = config_error(
            builder()
                .with_same_site(SameSite::None)
                .with_secure(false)
                .build(),
        );
        assert_eq!(secure_first, same_site_first);
        assert!(secure_first.contains("SameSite=None"), "{secure_first}");
        assert!(
            builder()
                .with_secure(false)
                .with_same_site(SameSite::None)
                .with_secure(true)
                .build()
                .is_ok(),
            "only the final configuration counts"
        );
    }

    #[test]
    fn prefixed_cookie_names_need_secure_in_either_order() {
        for name in ["__Host-id", "__Secure-id", "__host-id", "__SECURE-id"] {
            let name_first =
                config_error(builder().with_cookie_name(name).with_secure(false).build());
            let secure_first =
                config_error(builder().with_secure(false).with_cookie_name(name).build());
            assert_eq!(name_first, secure_first, "{name}");
        }
        assert!(
            builder().with_cookie_name("__Secure-id").build().is_ok(),
            "Secure is on by default"
        );
        assert!(builder().with_cookie_name("__Host-id").build().is_ok());
    }

    #[test]
    fn a_host_prefixed_name_needs_path_slash_and_no_domain() {
        let host = || builder().with_cookie_name("__Host-id");
        assert!(host().with_path("/admin").build().is_err());
        assert!(host().with_domain("example.com").build().is_err());
        assert!(
            builder()
                .with_host_prefix()
                .with_path("/admin")
                .build()
                .is_err()
        );
        assert!(
            builder()
                .with_domain("example.com")
                .with_cookie_name("__Secure-id")
                .build()
                .is_ok(),
            "__Secure- allows a Domain"
        );
    }

    #[test]
    fn host_prefix_without_secure_is_refused_in_either_order() {
        let secure_first = config_error(builder().with_secure(false).with_host_prefix().build());
        let prefix_first = config_error(builder().with_host_prefix().with_secure(false).build());
        assert_eq!(secure_first, prefix_first);
    }
}
