//! The cross-backend conformance suite against the shared single node, once per serializer.
//! Each test gets its own key prefix, and its keys are deleted when it ends.

use crate::common::{Cleanup, connect, redis_url, unique_prefix};
use deadpool_redis::redis;
use sessionkit_core::conformance::Harness;
use sessionkit_core::{IdGenerator, Serializer};
use sessionkit_redis::{CorruptRecords, RedisBackend};

/// A harness on one Redis reached by `connect` (the shared single node, or the master of a
/// Sentinel group), under a key prefix of its own.
pub struct RedisHarness<S> {
    /// A backend on the Redis under test, before the prefix and serializer are set.
    connect: Box<dyn Fn() -> RedisBackend + Send + Sync>,
    /// Where raw records are planted: the server that takes writes.
    raw_url: String,
    prefix: String,
    serializer: S,
    _cleanup: Option<Cleanup>,
}

impl<S> RedisHarness<S> {
    /// On `connect`'s Redis, planting raw records at `raw_url`; the keys stay (for a server
    /// the test stops whole).
    pub fn new(
        connect: impl Fn() -> RedisBackend + Send + Sync + 'static,
        raw_url: String,
        serializer: S,
    ) -> Self {
        RedisHarness {
            connect: Box::new(connect),
            raw_url,
            prefix: unique_prefix(),
            serializer,
            _cleanup: None,
        }
    }

    /// On the shared single node, its keys deleted when the harness goes.
    pub fn single_node(serializer: S) -> Self {
        let url = redis_url();
        let mut harness = RedisHarness::new(
            {
                let url = url.clone();
                move || RedisBackend::from_url(&url).expect("a valid URL")
            },
            url.clone(),
            serializer,
        );
        harness._cleanup = Some(Cleanup {
            url,
            prefix: harness.prefix.clone(),
        });
        harness
    }
}

impl<S: Serializer + Clone> Harness for RedisHarness<S> {
    type Backend = RedisBackend<S>;

    async fn backend(&self) -> RedisBackend<S> {
        (self.connect)()
            .with_prefix(self.prefix.as_str())
            .with_serializer(self.serializer.clone())
    }

    async fn backend_with_ids(&self, ids: IdGenerator) -> Option<RedisBackend<S>> {
        Some(self.backend().await.with_id_generator(ids))
    }

    async fn plant_raw(&self, backend: &RedisBackend<S>, bytes: &[u8]) -> Option<String> {
        let id = sessionkit_core::generate_id();
        let _: () = redis::cmd("SET")
            .arg(backend.key(&id))
            .arg(bytes)
            .query(&mut connect(&self.raw_url))
            .expect("SET the raw record");
        Some(id)
    }

    async fn strict_backend(&self) -> Option<RedisBackend<S>> {
        Some(
            self.backend()
                .await
                .with_corrupt_records(CorruptRecords::Fail),
        )
    }
}

mod json {
    use super::RedisHarness;
    use sessionkit_core::JsonSerializer;

    sessionkit_core::conformance_tests!(RedisHarness::single_node(JsonSerializer));
}

#[cfg(feature = "bincode")]
mod bincode {
    use super::RedisHarness;
    use sessionkit_core::BincodeSerializer;

    // Redis expires keys by its own clock, so these cases wait in real time; the record
    // format plays no part in them, and the JSON run covers them.
    sessionkit_core::conformance_tests!(RedisHarness::single_node(BincodeSerializer), skip: {
        TtlHonoured: "Redis's own clock, in real time: covered once by the JSON run",
        TtlResetsOnWrite: "Redis's own clock, in real time: covered once by the JSON run",
        UserExpiredSessionsPruned: "Redis's own clock, in real time: covered once by the JSON run",
    });
}
