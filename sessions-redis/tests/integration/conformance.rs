//! The cross-backend conformance suite against the shared single node, once per serializer.
//! Each test gets its own key prefix, and its keys are deleted when it ends.

use crate::common::{Cleanup, connect, redis_url, unique_prefix};
use deadpool_redis::redis;
use sessionkit_core::conformance::Harness;
use sessionkit_core::{IdGenerator, Serializer};
use sessionkit_redis::{CorruptRecords, RedisBackend};

pub struct SingleNode<S> {
    url: String,
    prefix: String,
    serializer: S,
    _cleanup: Cleanup,
}

impl<S> SingleNode<S> {
    pub fn new(serializer: S) -> Self {
        let url = redis_url();
        let prefix = unique_prefix();
        SingleNode {
            _cleanup: Cleanup {
                url: url.clone(),
                prefix: prefix.clone(),
            },
            url,
            prefix,
            serializer,
        }
    }
}

impl<S: Serializer + Clone> Harness for SingleNode<S> {
    type Backend = RedisBackend<S>;

    async fn backend(&self) -> RedisBackend<S> {
        RedisBackend::from_url(&self.url)
            .expect("a valid URL")
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
            .query(&mut connect(&self.url))
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
    use super::SingleNode;
    use sessionkit_core::JsonSerializer;

    sessionkit_core::conformance_tests!(SingleNode::new(JsonSerializer));
}

#[cfg(feature = "bincode")]
mod bincode {
    use super::SingleNode;
    use sessionkit_core::BincodeSerializer;

    // Redis expires keys by its own clock, so these cases wait in real time; the record
    // format plays no part in them, and the JSON run covers them.
    sessionkit_core::conformance_tests!(SingleNode::new(BincodeSerializer), skip: {
        TtlHonoured: "Redis's own clock, in real time: covered once by the JSON run",
        TtlResetsOnWrite: "Redis's own clock, in real time: covered once by the JSON run",
        UserExpiredSessionsPruned: "Redis's own clock, in real time: covered once by the JSON run",
    });
}
