use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The values of one session: string keys to JSON-shaped values.
pub type Values = Map<String, Value>;

/// One stored session record: its values and its metadata.
///
/// Cloning is cheap: the values sit behind an [`Arc`] and are copied only when a clone is
/// modified, so a backend can hand out its stored record without copying the map.
///
/// The metadata travels with the values in every backend, so time limits can be enforced on
/// the server whatever the store: `created` is when the session was first stored,
/// `last_access` when it was last written.
#[derive(Clone, Debug)]
pub struct SessionData {
    values: Arc<Values>,
    created: u64,
    last_access: u64,
    /// What few sessions have (an own lifetime, a user), behind one pointer: a session
    /// without them carries, copies and drops a single `None`.
    extra: Option<Arc<Extra>>,
    revision: Option<Revision>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Extra {
    lifetime: Option<Lifetime>,
    user: Option<Arc<str>>,
}

/// One session's own lifetime, overriding the layer's `max_age` for it (a "remember me"),
/// set by [`Session::set_lifetime`](crate::Session::set_lifetime). It is stored with the
/// record and enforced on the server; the layer's idle and absolute limits still cap it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// A browser-session cookie (no `Max-Age`): the browser forgets it when it closes. On the
    /// server the record lives as the layer's limits (or the backend's default) say.
    BrowserSession,
    /// Ends at this time, in seconds since the Unix epoch; the cookie's `Max-Age` counts
    /// down to it.
    Until(u64),
    /// Ends after this long without a save (activity renews it); the cookie's `Max-Age` is
    /// this long.
    Inactivity(Duration),
}

impl Lifetime {
    /// A lifetime ending at `at`.
    pub fn until(at: SystemTime) -> Lifetime {
        Lifetime::Until(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }
}

/// Records are equal when their values and metadata are: the [`Revision`] a backend attaches
/// says where a record came from, not what it holds.
impl PartialEq for SessionData {
    fn eq(&self, other: &Self) -> bool {
        self.created == other.created
            && self.last_access == other.last_access
            && self.lifetime() == other.lifetime()
            && self.user() == other.user()
            && self.values == other.values
    }
}

/// Which stored state of a record a [`SessionData`] was read from: an opaque token a backend
/// attaches in [`read`](crate::SessionBackend::read) and gets back in
/// [`apply`](crate::SessionBackend::apply), to apply changes to that state atomically (compare
/// and swap) and notice when another save came in between.
///
/// A backend picks what suits its store: a version number (the SQL backend's version column)
/// or the stored bytes themselves (the Redis backend compares them in a script).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision(RevisionKind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum RevisionKind {
    Number(i64),
    Bytes(Arc<[u8]>),
}

impl Revision {
    /// A version number.
    pub fn number(version: i64) -> Self {
        Revision(RevisionKind::Number(version))
    }

    /// The stored bytes.
    pub fn bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        Revision(RevisionKind::Bytes(bytes.into()))
    }

    /// The version number, if this is one.
    pub fn as_number(&self) -> Option<i64> {
        match &self.0 {
            RevisionKind::Number(n) => Some(*n),
            RevisionKind::Bytes(_) => None,
        }
    }

    /// The stored bytes, if this is them.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            RevisionKind::Bytes(bytes) => Some(bytes),
            RevisionKind::Number(_) => None,
        }
    }
}

/// An empty record, created and accessed at 0 (never stored): shares one empty map, so making
/// one neither allocates nor reads the clock.
impl Default for SessionData {
    fn default() -> Self {
        static EMPTY: OnceLock<Arc<Values>> = OnceLock::new();
        SessionData {
            values: Arc::clone(EMPTY.get_or_init(Arc::default)),
            created: 0,
            last_access: 0,
            extra: None,
            revision: None,
        }
    }
}

impl SessionData {
    /// A record holding `values`, created and accessed now by the system clock.
    pub fn new(values: Values) -> Self {
        let now = crate::Clock::system().unix_secs();
        SessionData::from_parts(values, now, now)
    }

    /// A record from its parts; `created` and `last_access` are seconds since the Unix epoch.
    pub fn from_parts(values: Values, created: u64, last_access: u64) -> Self {
        SessionData {
            values: Arc::new(values),
            created,
            last_access,
            extra: None,
            revision: None,
        }
    }

    /// The session's values.
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The session's values, for changing them (copied first if another clone shares them).
    pub fn values_mut(&mut self) -> &mut Values {
        Arc::make_mut(&mut self.values)
    }

    /// The values, owned (copied only if another clone shares them).
    pub fn into_values(self) -> Values {
        Arc::unwrap_or_clone(self.values)
    }

    /// Whether the session holds nothing: no values and no user. An empty session is not
    /// stored (and a stored one that becomes empty is removed).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.user().is_none()
    }

    /// When the session was first stored, in seconds since the Unix epoch.
    pub fn created_unix(&self) -> u64 {
        self.created
    }

    /// When the session was last written, in seconds since the Unix epoch.
    pub fn last_access_unix(&self) -> u64 {
        self.last_access
    }

    /// When the session was first stored.
    pub fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.created)
    }

    /// When the session was last written.
    pub fn last_access(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.last_access)
    }

    /// Record an access at `unix_secs`.
    pub fn set_last_access(&mut self, unix_secs: u64) {
        self.last_access = unix_secs;
    }

    /// Set the creation time (used when a backend rebuilds a record from storage).
    pub fn set_created(&mut self, unix_secs: u64) {
        self.created = unix_secs;
    }

    /// The session's own lifetime, when it has one.
    pub fn lifetime(&self) -> Option<Lifetime> {
        self.extra.as_ref().and_then(|extra| extra.lifetime)
    }

    /// Set (or clear) the session's own lifetime.
    pub fn set_lifetime(&mut self, lifetime: Option<Lifetime>) {
        if lifetime != self.lifetime() {
            self.extra_mut(|extra| extra.lifetime = lifetime);
        }
    }

    /// The user (principal) the session is bound to, when it is: what lets a backend list
    /// and revoke a user's sessions (see [`Session::set_user`](crate::Session::set_user)).
    pub fn user(&self) -> Option<&str> {
        self.user_shared().map(|user| &**user)
    }

    /// The user, shared rather than copied.
    pub(crate) fn user_shared(&self) -> Option<&Arc<str>> {
        self.extra.as_ref().and_then(|extra| extra.user.as_ref())
    }

    /// Bind the session to `user`, or unbind it (`None`).
    pub fn set_user(&mut self, user: Option<Arc<str>>) {
        if user.as_deref() != self.user() {
            self.extra_mut(|extra| extra.user = user);
        }
    }

    /// Change the extra metadata (copied first if shared); none left is `None` again.
    fn extra_mut(&mut self, change: impl FnOnce(&mut Extra)) {
        let extra = self.extra.get_or_insert_with(Arc::default);
        change(Arc::make_mut(extra));
        if **extra == Extra::default() {
            self.extra = None;
        }
    }

    /// The stored state this record was read from, when the backend said.
    pub fn revision(&self) -> Option<&Revision> {
        self.revision.as_ref()
    }

    /// This record without the revision a read attached: what a new record (a session moved to
    /// a new id) starts from.
    pub fn without_revision(&self) -> Self {
        SessionData {
            revision: None,
            ..self.clone()
        }
    }

    /// This record, marked as read from the stored state `revision`.
    #[must_use]
    pub fn with_revision(mut self, revision: Revision) -> Self {
        self.revision = Some(revision);
        self
    }
}
