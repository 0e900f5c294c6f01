//! The workspace's conformance suite against `FileBackend`: what a backend crate runs in its
//! own tests. Each case gets a fresh directory under Cargo's scratch space for tests, removed
//! when the case ends.

use custom_backend::FileBackend;
use sessionkit_core::IdGenerator;
use sessionkit_core::conformance::Harness;
use sessionkit_core::store::CorruptRecords;
use std::path::PathBuf;

struct FileHarness {
    dir: PathBuf,
}

impl FileHarness {
    fn new() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("custom-backend")
            .join(sessionkit_core::generate_id());
        FileHarness { dir }
    }
}

impl Drop for FileHarness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness for FileHarness {
    type Backend = FileBackend;

    async fn backend(&self) -> FileBackend {
        FileBackend::new(&self.dir).expect("a session directory")
    }

    // With a scripted id generator the suite checks that a create never overwrites.
    async fn backend_with_ids(&self, ids: IdGenerator) -> Option<FileBackend> {
        Some(self.backend().await.with_id_generator(ids))
    }

    // A live header (no deadline) over bytes no serializer reads.
    async fn plant_raw(&self, backend: &FileBackend, bytes: &[u8]) -> Option<String> {
        let id = sessionkit_core::generate_id();
        let mut file = b"sessions-file v1 never\n".to_vec();
        file.extend_from_slice(bytes);
        std::fs::write(backend.dir().join(format!("{id}.session")), file).expect("a raw file");
        Some(id)
    }

    async fn strict_backend(&self) -> Option<FileBackend> {
        Some(
            self.backend()
                .await
                .with_corrupt_records(CorruptRecords::Fail),
        )
    }
}

sessionkit_core::conformance_tests!(FileHarness::new(), skip: {
    UserSessionsListed: "keeps no index of sessions by user (the user is stored in each file, but not indexed)",
    UserRevokeAll: "keeps no index of sessions by user",
    UserRevokeOthers: "keeps no index of sessions by user",
    UserRevokeOne: "keeps no index of sessions by user",
    UserRebindingMovesTheSession: "keeps no index of sessions by user",
    UserExpiredSessionsPruned: "keeps no index of sessions by user",
    UserRevokeRacingSavesStaysRevoked: "keeps no index of sessions by user",
    UserCapEndsTheLeastRecentlyUsed: "keeps no index of sessions by user",
    UserCapCountsAMoveOnce: "keeps no index of sessions by user",
    EndedMarkerAfterRemove: "keeps no end markers: overlapping requests of a logout get their cookie expired",
    EndedMarkerAfterEmptyingSave: "keeps no end markers: overlapping requests of a logout get their cookie expired",
    EndedMarkerIsNoSession: "keeps no end markers: overlapping requests of a logout get their cookie expired",
    LockExcludesOthers: "keeps no session locks: a locked route refuses this backend when it is made",
    LockLeaseRunsOut: "keeps no session locks",
    LockedApplyIsFenced: "keeps no session locks",
});
