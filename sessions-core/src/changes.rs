//! What a session changed since it was loaded, applied by the backend to the record as it is
//! stored when the session is saved.

use crate::{Lifetime, SessionData, Values};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The changes a request made to its session since it was loaded: keys set, keys removed,
/// and whether it cleared every value first. Reads are not recorded.
///
/// A save applies them to the record as it is stored at that moment
/// ([`SessionBackend::apply`](crate::SessionBackend::apply)), so two overlapping requests
/// that change different keys both keep their change. For the same key the later save wins.
///
/// ```
/// use sessionkit_core::{Changes, SessionData, Values};
/// use serde_json::json;
///
/// let mut stored = Values::new();
/// stored.insert("cart".into(), json!(["book"]));
/// stored.insert("last_page".into(), json!("/home"));
/// let stored = SessionData::from_parts(stored, 1_000, 1_000);
///
/// // This request only changed `last_page`; another one changed `cart` meanwhile.
/// let mut changes = Changes::default();
/// changes.set("last_page", json!("/checkout"));
/// let merged = changes.applied_to(&stored, 2_000);
/// assert_eq!(merged.values()["cart"], json!(["book"]));
/// assert_eq!(merged.values()["last_page"], json!("/checkout"));
/// assert_eq!((merged.created_unix(), merged.last_access_unix()), (1_000, 2_000));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    cleared: bool,
    set: Values,
    removed: BTreeSet<String>,
    /// A new lifetime of the session's own (`Some(None)`: back to the layer's).
    lifetime: Option<Option<Lifetime>>,
    /// A new user binding (`Some(None)`: unbound).
    user: Option<Option<Arc<str>>>,
}

impl Changes {
    /// Record that `key` now holds `value`.
    pub fn set(&mut self, key: &str, value: Value) {
        self.removed.remove(key);
        self.set.insert(key.to_owned(), value);
    }

    /// Record that `key` was removed.
    pub fn remove(&mut self, key: &str) {
        self.set.remove(key);
        self.removed.insert(key.to_owned());
    }

    /// Record that every value was removed, and the user binding with them: what the record
    /// held before goes, and only what is set afterwards remains.
    pub fn clear(&mut self) {
        self.cleared = true;
        self.set.clear();
        self.removed.clear();
        self.user = Some(None);
    }

    /// Record that the session is now bound to `user` (`None`: unbound).
    pub fn set_user(&mut self, user: Option<Arc<str>>) {
        self.user = Some(user);
    }

    /// The user this save binds the session to, when it binds one: what a backend that keeps
    /// an index of sessions by user adds the session under.
    pub fn binds_user(&self) -> Option<&str> {
        self.user.as_ref().and_then(Option::as_deref)
    }

    /// Record that the session's own lifetime is now `lifetime` (`None`: the layer's).
    pub fn set_lifetime(&mut self, lifetime: Option<Lifetime>) {
        self.lifetime = Some(lifetime);
    }

    /// Whether nothing was changed.
    pub fn is_empty(&self) -> bool {
        !self.cleared
            && self.set.is_empty()
            && self.removed.is_empty()
            && self.lifetime.is_none()
            && self.user.is_none()
    }

    /// Whether every value was removed before the keys in [`sets`](Changes::sets) were set.
    pub fn cleared(&self) -> bool {
        self.cleared
    }

    /// The keys set, with their new values.
    pub fn sets(&self) -> &Values {
        &self.set
    }

    /// The keys removed.
    pub fn removed(&self) -> impl Iterator<Item = &str> {
        self.removed.iter().map(String::as_str)
    }

    /// Apply the changes to `values`.
    fn apply_to(&self, values: &mut Values) {
        if self.cleared {
            values.clear();
        }
        for key in &self.removed {
            values.remove(key);
        }
        for (key, value) in &self.set {
            values.insert(key.clone(), value.clone());
        }
    }

    /// `stored` with the changes applied: its creation time kept, its last access `now`
    /// (Unix seconds) or later if the stored one is.
    pub fn applied_to(&self, stored: &SessionData, now: u64) -> SessionData {
        let mut merged = stored.clone();
        if self.cleared || !self.set.is_empty() || !self.removed.is_empty() {
            self.apply_to(merged.values_mut());
        }
        if let Some(lifetime) = self.lifetime {
            merged.set_lifetime(lifetime);
        }
        if let Some(user) = &self.user {
            merged.set_user(user.clone());
        }
        merged.set_last_access(now.max(stored.last_access_unix()));
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(value: Value) -> Values {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_last_change_to_a_key_wins_within_one_request() {
        let mut changes = Changes::default();
        changes.set("a", json!(1));
        changes.remove("a");
        changes.remove("b");
        changes.set("b", json!(2));
        let mut stored = values(json!({"a": 0, "b": 0, "c": 0}));
        changes.apply_to(&mut stored);
        assert_eq!(stored, values(json!({"b": 2, "c": 0})));
    }

    #[test]
    fn clear_removes_what_was_stored_and_keeps_what_is_set_after_it() {
        let mut changes = Changes::default();
        changes.set("gone", json!(1));
        changes.clear();
        changes.set("kept", json!(2));
        assert!(changes.cleared());
        let mut stored = values(json!({"other": 0}));
        changes.apply_to(&mut stored);
        assert_eq!(stored, values(json!({"kept": 2})));
    }

    #[test]
    fn no_changes_leave_the_record_as_stored() {
        let stored = SessionData::from_parts(values(json!({"a": 1})), 5, 7);
        let merged = Changes::default().applied_to(&stored, 6);
        assert_eq!(merged.values(), stored.values());
        assert_eq!(merged.last_access_unix(), 7, "the latest access is kept");
        assert!(Changes::default().is_empty());
    }
}
