//! The cross-backend conformance suite on every database, once per serializer. Each test gets
//! a table of its own, dropped when it ends.

use crate::common::{Fixture, Kind, Raw};
use sessionkit_core::conformance::Harness;
use sessionkit_core::{Clock, IdGenerator, Serializer};
use sessionkit_sql::{CorruptRecords, SqlBackend, SqlBackendBuilder};

/// Every backend of one case reads one manual clock, which the TTL cases advance: rows
/// expire by the backend's clock (a statement parameter), so no case sleeps.
pub struct Table<K: Kind, S> {
    fixture: Fixture<K>,
    serializer: S,
    clock: Clock,
}

impl<K: Kind, S> Table<K, S> {
    pub fn new(serializer: S) -> Self {
        Table {
            fixture: Fixture::unmigrated(),
            serializer,
            clock: Clock::manual_from_now(),
        }
    }
}

impl<K: Kind, S: Serializer + Clone> Table<K, S> {
    fn builder(&self) -> SqlBackendBuilder<K::DB, S> {
        self.fixture
            .variant()
            .with_serializer(self.serializer.clone())
            .with_clock(self.clock.clone())
    }

    async fn migrated(&self, builder: SqlBackendBuilder<K::DB, S>) -> SqlBackend<K::DB, S> {
        let backend = builder.build().expect("the fixture's table name");
        backend.migrate().await.expect("migrate");
        backend
    }
}

impl<K: Kind, S: Serializer + Clone> Harness for Table<K, S> {
    type Backend = SqlBackend<K::DB, S>;

    async fn backend(&self) -> SqlBackend<K::DB, S> {
        self.migrated(self.builder()).await
    }

    async fn backend_with_ids(&self, ids: IdGenerator) -> Option<SqlBackend<K::DB, S>> {
        Some(self.migrated(self.builder().with_id_generator(ids)).await)
    }

    async fn plant_raw(&self, _backend: &SqlBackend<K::DB, S>, bytes: &[u8]) -> Option<String> {
        let id = sessionkit_core::generate_id();
        let sql = format!(
            "INSERT INTO {} (id, data, expires_at) VALUES ('{id}', {}, NULL)",
            self.fixture.t(),
            <K::DB as Raw>::bytes_literal(bytes)
        );
        self.fixture.exec(&sql).await;
        Some(id)
    }

    async fn pass_time(&self, by: std::time::Duration) {
        self.clock.advance(by);
    }

    async fn strict_backend(&self) -> Option<SqlBackend<K::DB, S>> {
        let strict = self.builder().with_corrupt_records(CorruptRecords::Fail);
        Some(self.migrated(strict).await)
    }
}

macro_rules! suites {
    ($($module:ident => $kind:ident, $feature:literal;)*) => {$(
        #[cfg(feature = $feature)]
        mod $module {
            mod json {
                use crate::conformance::Table;
                use sessionkit_core::JsonSerializer;
                sessionkit_core::conformance_tests!(
                    Table::<crate::common::$kind, _>::new(JsonSerializer)
                );
            }
            #[cfg(feature = "bincode")]
            mod bincode {
                use crate::conformance::Table;
                use sessionkit_core::BincodeSerializer;
                sessionkit_core::conformance_tests!(
                    Table::<crate::common::$kind, _>::new(BincodeSerializer)
                );
            }
        }
    )*};
}

suites! {
    sqlite_memory => SqliteMemory, "sqlite";
    sqlite_file => SqliteFile, "sqlite";
    postgres => Postgres, "postgres";
    mysql => MySql, "mysql";
}
