//! The conformance suite for the memory backend as the workspace's tests configure it. (The
//! cookie backend runs it in sessionkit-cookie's own tests, with its one skip list.)

use sessionkit_core::IdGenerator;
use sessionkit_core::conformance::Harness;
use sessionkit_memory::InMemoryBackend;

struct Memory;

impl Harness for Memory {
    type Backend = InMemoryBackend;
    async fn backend(&self) -> InMemoryBackend {
        InMemoryBackend::new().with_max_sessions(10_000)
    }
    async fn backend_with_ids(&self, ids: IdGenerator) -> Option<InMemoryBackend> {
        Some(InMemoryBackend::new().with_id_generator(ids))
    }
}

mod memory {
    sessionkit_core::conformance_tests!(super::Memory, skip: {
        CorruptRecordReadsAsMissing: "the memory store keeps records as values, never as bytes: nothing to corrupt",
        CorruptRecordFailsWhenStrict: "the memory store keeps records as values, never as bytes: nothing to corrupt",
    });
}
