//! The limits, failure handling and loading a session layer applies to its sessions.

use crate::{Clock, Lifetime, SessionData};
use std::time::Duration;

/// Time limits, failure handling and loading for sessions; the limits are enforced on the
/// server for every backend.
///
/// - `idle`: a session not used for this long ends. Activity extends it: every save records
///   the time, and an unchanged session is saved again (through
///   [`SessionBackend::apply`](crate::SessionBackend::apply), with no changes) once
///   `refresh_after` has passed since its last save (default: half the idle window). A
///   session with a lifetime of its own, [`Lifetime::Inactivity`] ("remember me"), has its
///   window in place of this one; `BrowserSession` and `Until` sessions keep it.
/// - `absolute`: a session ends this long after it was created, however active: a hard cap
///   for every session, its own lifetime included (a longer one is cut to it).
/// - `max_age`: the cookie's lifetime, which also caps the stored record's.
///
/// A session past a limit reads as empty whatever the store still holds, and its record is
/// removed. The TTL handed to the backend is the smallest of `max_age`, `idle` and the time
/// left before `absolute`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// The clock the limits are measured against (the system clock by default).
    pub clock: Clock,
    /// The idle timeout.
    pub idle: Option<Duration>,
    /// The absolute lifetime, counted from creation.
    pub absolute: Option<Duration>,
    /// The cookie's max age (`None`: a browser-session cookie).
    pub max_age: Option<Duration>,
    /// How long after its last save an unchanged session is refreshed (`None`: half of `idle`).
    pub refresh_after: Option<Duration>,
    /// On a storage failure, go on with an empty session that is never saved (and log a
    /// warning) instead of failing the request.
    pub fail_open: bool,
    /// A new session's first lifetime on the server: until its client sends the cookie back,
    /// its record lives at most this long; the first request that comes back with it saves it
    /// once more with the full lifetime. Sessions nobody returns to (a flood, a crawler) then
    /// leave no long-lived records. `None`: new sessions get the full lifetime at once.
    pub probation: Option<Duration>,
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

impl Policy {
    /// No limits beyond the cookie's `max_age`; failures fail the request.
    pub fn new(max_age: Option<Duration>) -> Self {
        Policy {
            max_age,
            ..Policy::default()
        }
    }

    /// The time now by the policy's clock, in seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.clock.unix_secs()
    }

    /// Whether any limit needs the clock when a session is loaded (a session's own lifetime
    /// is checked whenever it has one).
    pub fn has_limits(&self) -> bool {
        self.idle.is_some() || self.absolute.is_some()
    }

    /// Whether `data` is past a limit at `now` (Unix seconds): the layer's idle or absolute
    /// limit, or the session's own lifetime.
    pub fn expired(&self, data: &SessionData, now: u64) -> bool {
        let past = |since: u64, limit: Option<Duration>| {
            limit.is_some_and(|limit| now.saturating_sub(since) >= secs(limit).max(1))
        };
        let own = match data.lifetime() {
            Some(Lifetime::Until(at)) => now >= at,
            _ => false,
        };
        own || past(data.last_access_unix(), self.idle_for(data))
            || past(data.created_unix(), self.absolute)
    }

    /// The inactivity window of `data`: its own [`Lifetime::Inactivity`] window, or the
    /// layer's idle timeout.
    pub fn idle_for(&self, data: &SessionData) -> Option<Duration> {
        match data.lifetime() {
            Some(Lifetime::Inactivity(window)) => Some(window),
            _ => self.idle,
        }
    }

    /// The cookie's lifetime for `data` at `now`: the layer's `max_age`, unless the session has
    /// a lifetime of its own (`None`: a browser-session cookie).
    pub fn max_age_for(&self, data: &SessionData, now: u64) -> Option<Duration> {
        match data.lifetime() {
            None => self.max_age,
            Some(Lifetime::BrowserSession) => None,
            Some(Lifetime::Until(at)) => Some(Duration::from_secs(at.saturating_sub(now).max(1))),
            Some(Lifetime::Inactivity(window)) => Some(window),
        }
    }

    /// The TTL for `data` saved at `now`: the smallest of its cookie lifetime, the idle limit
    /// and what the absolute limit leaves; for a record saved for the first time (`new`), no
    /// longer than the probation.
    pub fn ttl_for(&self, data: &SessionData, now: u64, new: bool) -> Option<Duration> {
        let ttl = self.ttl_with(
            self.max_age_for(data, now),
            self.idle_for(data),
            data.created_unix(),
            now,
        );
        match (new, self.probation) {
            (true, Some(probation)) => Some(ttl.map_or(probation, |ttl| ttl.min(probation))),
            _ => ttl,
        }
    }

    /// Whether `data`, as loaded, was never saved again since its creation: with a
    /// probation, it lives on the short first lifetime until saved once more.
    pub fn on_probation(&self, data: &SessionData) -> bool {
        self.probation.is_some() && data.last_access_unix() == data.created_unix()
    }

    /// The TTL for a record created at `created` and saved at `now`.
    pub fn ttl(&self, created: u64, now: u64) -> Option<Duration> {
        self.ttl_with(self.max_age, self.idle, created, now)
    }

    /// [`ttl`](Self::ttl) with `max_age` and `idle` in place of the layer's.
    fn ttl_with(
        &self,
        max_age: Option<Duration>,
        idle: Option<Duration>,
        created: u64,
        now: u64,
    ) -> Option<Duration> {
        let absolute_left = self.absolute.map(|absolute| {
            let end = created.saturating_add(secs(absolute));
            Duration::from_secs(end.saturating_sub(now).max(1))
        });
        [max_age, idle, absolute_left].into_iter().flatten().min()
    }

    /// How long `data` has left at `now`, or `None` when no limit applies.
    pub fn remaining(&self, data: &SessionData, now: u64) -> Option<Duration> {
        let left = |since: u64, limit: Option<Duration>| {
            limit.map(|limit| {
                Duration::from_secs(since.saturating_add(secs(limit)).saturating_sub(now))
            })
        };
        let own_end = match data.lifetime() {
            Some(Lifetime::Until(at)) => Some(Duration::from_secs(at.saturating_sub(now))),
            _ => left(data.last_access_unix(), self.max_age_for(data, now)),
        };
        [
            left(data.last_access_unix(), self.idle_for(data)),
            left(data.created_unix(), self.absolute),
            own_end,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether an unchanged session saved at `data.last_access` should be refreshed at `now`:
    /// it has an inactivity window (its own, or the layer's idle timeout) and `refresh_after`
    /// (default: half the window) has passed since its last save.
    pub fn needs_refresh(&self, data: &SessionData, now: u64) -> bool {
        let Some(idle) = self.idle_for(data) else {
            return false;
        };
        let after = self.refresh_after.unwrap_or(idle / 2).min(idle / 2);
        now.saturating_sub(data.last_access_unix()) >= secs(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Values;

    fn data(created: u64, last_access: u64) -> SessionData {
        SessionData::from_parts(Values::new(), created, last_access)
    }

    #[test]
    fn idle_and_absolute_limits() {
        let p = Policy {
            idle: Some(Duration::from_secs(60)),
            absolute: Some(Duration::from_secs(600)),
            ..Policy::default()
        };
        assert!(!p.expired(&data(1000, 1000), 1059));
        assert!(p.expired(&data(1000, 1000), 1060), "idle limit");
        assert!(!p.expired(&data(1000, 1590), 1599));
        assert!(
            p.expired(&data(1000, 1599), 1600),
            "absolute limit, however active"
        );
    }

    #[test]
    fn ttl_is_the_smallest_limit() {
        let p = Policy {
            idle: Some(Duration::from_secs(60)),
            absolute: Some(Duration::from_secs(600)),
            max_age: Some(Duration::from_secs(3600)),
            ..Policy::default()
        };
        assert_eq!(p.ttl(1000, 1000), Some(Duration::from_secs(60)));
        assert_eq!(
            p.ttl(1000, 1570),
            Some(Duration::from_secs(30)),
            "absolute remaining"
        );
        assert_eq!(Policy::new(None).ttl(0, 0), None);
        assert_eq!(
            Policy::new(Some(Duration::from_secs(5))).ttl(0, 0),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn probation_shortens_a_new_records_lifetime_only() {
        let p = Policy {
            max_age: Some(Duration::from_secs(3600)),
            probation: Some(Duration::from_secs(60)),
            ..Policy::default()
        };
        assert_eq!(
            p.ttl_for(&data(1000, 1000), 1000, true),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.ttl_for(&data(1000, 1000), 1100, false),
            Some(Duration::from_secs(3600))
        );
        let forever = Policy {
            probation: Some(Duration::from_secs(60)),
            ..Policy::default()
        };
        assert_eq!(
            forever.ttl_for(&data(0, 0), 0, true),
            Some(Duration::from_secs(60))
        );
        assert!(p.on_probation(&data(1000, 1000)));
        assert!(!p.on_probation(&data(1000, 1001)));
        assert!(!Policy::default().on_probation(&data(1000, 1000)));
    }

    #[test]
    fn a_sessions_own_lifetime_replaces_max_age_and_is_enforced() {
        let p = Policy {
            max_age: Some(Duration::from_secs(3600)),
            idle: Some(Duration::from_secs(600)),
            ..Policy::default()
        };
        let with = |lifetime| {
            let mut d = data(1000, 1000);
            d.set_lifetime(Some(lifetime));
            d
        };
        let remember = with(Lifetime::Inactivity(Duration::from_secs(86_400)));
        assert_eq!(
            p.max_age_for(&remember, 1000),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            p.ttl_for(&remember, 1000, false),
            Some(Duration::from_secs(86_400)),
            "its own window replaces the layer's idle timeout"
        );
        assert!(
            !p.expired(&remember, 1000 + 3_600),
            "an hour idle: past the layer's 10 minutes, within its own day"
        );
        assert!(
            p.expired(&remember, 1000 + 86_400),
            "a day idle: its own window"
        );
        assert!(
            p.needs_refresh(&remember, 1000 + 43_200),
            "refreshed at half its window"
        );
        assert!(!p.needs_refresh(&remember, 1000 + 43_199));
        let browser = with(Lifetime::BrowserSession);
        assert_eq!(p.max_age_for(&browser, 1000), None);
        assert_eq!(
            p.ttl_for(&browser, 1000, false),
            Some(Duration::from_secs(600))
        );
        let until = with(Lifetime::Until(1300));
        assert_eq!(p.max_age_for(&until, 1000), Some(Duration::from_secs(300)));
        assert!(!p.expired(&until, 1299));
        assert!(p.expired(&until, 1300), "past its deadline");
        let short = with(Lifetime::Inactivity(Duration::from_secs(60)));
        assert!(!p.expired(&short, 1059));
        assert!(p.expired(&short, 1060), "its own inactivity window");
        assert_eq!(p.remaining(&until, 1100), Some(Duration::from_secs(200)));
        assert_eq!(
            p.max_age_for(&data(1000, 1000), 1000),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn refresh_after_half_the_idle_window_by_default() {
        let p = Policy {
            idle: Some(Duration::from_secs(60)),
            ..Policy::default()
        };
        assert!(!p.needs_refresh(&data(0, 1000), 1029));
        assert!(p.needs_refresh(&data(0, 1000), 1030));
        let custom = Policy {
            refresh_after: Some(Duration::from_secs(10)),
            ..p
        };
        assert!(custom.needs_refresh(&data(0, 1000), 1010));
        assert!(!Policy::default().needs_refresh(&data(0, 0), 1_000_000));
    }

    #[test]
    fn remaining_counts_down_to_the_nearest_limit() {
        let p = Policy {
            idle: Some(Duration::from_secs(60)),
            absolute: Some(Duration::from_secs(100)),
            ..Policy::default()
        };
        assert_eq!(
            p.remaining(&data(1000, 1050), 1060),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            p.remaining(&data(1000, 1000), 1010),
            Some(Duration::from_secs(50))
        );
        assert_eq!(Policy::default().remaining(&data(0, 0), 5), None);
    }
}
