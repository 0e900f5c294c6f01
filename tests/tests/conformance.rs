//! The conformance suite for the memory backend as the workspace's tests configure it. (The
//! cookie backend runs it in sessionkit-cookie's own tests, with its one skip list.)

use sessionkit_core::conformance::Harness;
use sessionkit_core::{Clock, IdGenerator};
use sessionkit_memory::InMemoryBackend;
use std::time::Duration;

/// Every backend of one case reads one manual clock, which the TTL cases advance.
struct Memory(Clock);

impl Harness for Memory {
    type Backend = InMemoryBackend;
    async fn backend(&self) -> InMemoryBackend {
        InMemoryBackend::new()
            .with_max_sessions(10_000)
            .with_clock(self.0.clone())
    }
    async fn backend_with_ids(&self, ids: IdGenerator) -> Option<InMemoryBackend> {
        Some(
            InMemoryBackend::new()
                .with_id_generator(ids)
                .with_clock(self.0.clone()),
        )
    }
    async fn pass_time(&self, by: Duration) {
        self.0.advance(by);
    }
}

mod memory {
    sessionkit_core::conformance_tests!(super::Memory(super::Clock::manual_from_now()), skip: {
        CorruptRecordReadsAsMissing: "the memory store keeps records as values, never as bytes: nothing to corrupt",
        CorruptRecordFailsWhenStrict: "the memory store keeps records as values, never as bytes: nothing to corrupt",
    });
}
