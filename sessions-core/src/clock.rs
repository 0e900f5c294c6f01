//! Where sessions read the time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The clock a session layer's [`Policy`](crate::adapter::Policy) and the backends read the
/// time from: the system clock unless told otherwise.
///
/// Every time limit (a record's TTL, the idle and absolute timeouts, a session's own
/// lifetime, a cookie's expiry) is measured against it. Tests give the layer and the backend
/// one [manual](Clock::manual) clock and [advance](Clock::advance) it instead of sleeping;
/// clones share the same time.
///
/// ```
/// use sessionkit_core::Clock;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let clock = Clock::manual(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(shared.unix_secs(), 1_700_000_090);
/// assert!(Clock::system().unix_secs() > 1_700_000_000);
/// ```
///
/// A store that expires records by its own clock (Redis's key expiry) does not see a manual
/// clock: a test of such a store's expiry waits in real time.
#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system clock; otherwise the manual time, in milliseconds since the epoch.
    manual: Option<Arc<AtomicU64>>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads `start` until [advanced](Clock::advance).
    pub fn manual(start: SystemTime) -> Clock {
        let start = start.duration_since(UNIX_EPOCH).map_or(0, millis);
        Clock {
            manual: Some(Arc::new(AtomicU64::new(start))),
        }
    }

    /// A manual clock that starts at the system clock's time.
    pub fn manual_from_now() -> Clock {
        Clock::manual(SystemTime::now())
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Move a manual clock (and its clones) forward by `by`. The system clock cannot be
    /// moved: on it this does nothing.
    pub fn advance(&self, by: Duration) {
        if let Some(now) = &self.manual {
            now.fetch_add(millis(by), Ordering::Relaxed);
        }
    }

    /// The time now.
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(now) => UNIX_EPOCH + Duration::from_millis(now.load(Ordering::Relaxed)),
        }
    }

    /// Milliseconds since the Unix epoch (0 for a clock set before it).
    pub fn unix_millis(&self) -> u64 {
        match &self.manual {
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, millis),
            Some(now) => now.load(Ordering::Relaxed),
        }
    }

    /// Seconds since the Unix epoch, as session records store their times.
    pub fn unix_secs(&self) -> u64 {
        self.unix_millis() / 1000
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system()"),
            Some(now) => write!(f, "Clock::manual(at {} ms)", now.load(Ordering::Relaxed)),
        }
    }
}

/// Two clocks are equal when they always read the same: both the system clock, or clones of
/// one manual clock.
impl PartialEq for Clock {
    fn eq(&self, other: &Clock) -> bool {
        match (&self.manual, &other.manual) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Clock {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let clock = Clock::manual(start);
        let clone = clock.clone();
        assert_eq!(clock.now(), start);
        assert_eq!(clock.unix_secs(), 1_700_000_000);
        clone.advance(Duration::from_millis(600));
        assert_eq!(clock.unix_millis(), 1_700_000_001_100);
        assert_eq!(clock.unix_secs(), 1_700_000_001);
        assert_eq!(clock, clone);
        assert_ne!(clock, Clock::manual(start), "another manual clock");
        assert_ne!(clock, Clock::system());
    }

    #[test]
    fn the_system_clock_follows_the_system_time_and_ignores_advance() {
        let clock = Clock::system();
        let before = SystemTime::now();
        clock.advance(Duration::from_secs(3_600));
        let read = clock.now();
        assert!(read >= before && read < before + Duration::from_secs(60));
        assert!(!clock.is_manual() && Clock::manual_from_now().is_manual());
        assert_eq!(Clock::system(), Clock::default());
    }
}
