//! Counting the SQL statements sqlx executes, from sqlx's own statement log: every statement
//! sqlx runs (prepared or not, `BEGIN` and `COMMIT` included) ends with one `tracing` event
//! under the target `sqlx::query`. A global subscriber that listens to that target alone
//! counts them, on every thread (SQLite runs statements on a worker thread per connection).
//!
//! Installed only in the runs that count: a subscriber makes sqlx format its log events,
//! which would otherwise cost nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

const TARGET: &str = "sqlx::query";

static STATEMENTS: AtomicU64 = AtomicU64::new(0);

struct StatementCounter;

impl Subscriber for StatementCounter {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.target() == TARGET {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.target() == TARGET
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == TARGET {
            STATEMENTS.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Start counting (once per process; later calls do nothing).
pub fn install() {
    let _ = tracing::subscriber::set_global_default(StatementCounter);
}

/// Statements executed so far.
pub fn count() -> u64 {
    STATEMENTS.load(Ordering::Relaxed)
}
