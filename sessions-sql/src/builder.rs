//! [`SqlBackendBuilder`]: the backend's options, checked together by `build`.

use super::*;

/// A new pool for `url` that connects on first use, and how many of its connections a backend
/// keeps by default (all of them: the pool is the backend's own).
pub(crate) fn url_pool<DB: SqlDatabase>(url: &str) -> Result<(sqlx::Pool<DB>, usize), Error> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::Config(format!(
            "{}: from_url must be called inside a tokio runtime (the pool runs tasks on it)",
            DB::LABEL
        )));
    }
    let pool = DB::lazy_pool(url, DEFAULT_ACQUIRE_TIMEOUT).map_err(|e| {
        Error::Config(format!(
            "{}: cannot make a pool for this URL: {e}",
            DB::LABEL
        ))
    })?;
    let max = pool.options().get_max_connections() as usize;
    Ok((pool, max))
}

/// The options of a [`SqlBackend`], from [`SqlBackend::builder`] or
/// [`SqlBackend::builder_from_url`]. Setting an option never fails; [`build`](Self::build)
/// reports the first problem (a URL that cannot be used, a table name that is not a plain
/// identifier).
#[must_use = "a builder makes no backend until `build()`"]
pub struct SqlBackendBuilder<DB: SqlDatabase, S = JsonSerializer> {
    /// The pool and how many of its connections the backend keeps unless told; or why the
    /// URL cannot give one.
    pool: Result<(sqlx::Pool<DB>, usize), Error>,
    table: String,
    max_connections: Option<usize>,
    batch: u32,
    serializer: S,
    expire: Option<Duration>,
    ids: Option<IdGenerator>,
    corrupt: CorruptRecords,
    clock: Clock,
}

impl<DB: SqlDatabase, S> fmt::Debug for SqlBackendBuilder<DB, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlBackendBuilder")
            .field("database", &DB::LABEL)
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("expire", &self.expire)
            .field("cleanup_batch_size", &self.batch)
            .field("serializer", &std::any::type_name::<S>())
            .field("corrupt_records", &self.corrupt)
            .finish_non_exhaustive()
    }
}

impl<DB: SqlDatabase> SqlBackendBuilder<DB> {
    pub(crate) fn new(pool: Result<(sqlx::Pool<DB>, usize), Error>) -> Self {
        SqlBackendBuilder {
            pool,
            table: DEFAULT_TABLE.to_owned(),
            max_connections: None,
            batch: DEFAULT_CLEANUP_BATCH,
            serializer: JsonSerializer,
            expire: None,
            ids: None,
            corrupt: CorruptRecords::default(),
            clock: Clock::system(),
        }
    }
}

impl<DB: SqlDatabase, S> SqlBackendBuilder<DB, S> {
    /// The backend, once every option has been checked.
    ///
    /// # Errors
    ///
    /// [`Error::Config`]: from [`builder_from_url`](SqlBackend::builder_from_url), a URL that
    /// cannot be parsed or a call outside a tokio runtime; a table name that is not a plain
    /// identifier (see [Schema](crate#schema)): `sessions; DROP TABLE x`, an empty name and
    /// quoted names are refused.
    pub fn build(self) -> Result<SqlBackend<DB, S>, Error> {
        let (pool, default_max) = self.pool?;
        let table = TableName::parse(&self.table)?;
        let max = self.max_connections.unwrap_or(default_max);
        Ok(SqlBackend {
            shared: Arc::new(Shared {
                conns: Arc::new(Conns::new(pool, max)),
                sql: DB::statements(&table),
                table,
                batch: self.batch,
                clock: self.clock,
                turns: Arc::default(),
                max_per_user: AtomicUsize::new(0),
            }),
            serializer: self.serializer,
            expire: self.expire,
            ids: self.ids,
            corrupt: self.corrupt,
        })
    }

    /// Store sessions in `table` (`name` or `schema.name`) instead of [`DEFAULT_TABLE`].
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The TTL for writes that bring none (see [Expiry](crate#expiry-and-cleanup)); it
    /// restarts on every write. A write's own TTL, when it has one, wins. Zero turns it off
    /// (the default).
    pub fn with_expire(mut self, expire: Duration) -> Self {
        self.expire = (!expire.is_zero()).then_some(expire);
        self
    }

    /// Encode records with `serializer` instead.
    pub fn with_serializer<T: Serializer>(self, serializer: T) -> SqlBackendBuilder<DB, T> {
        SqlBackendBuilder {
            pool: self.pool,
            table: self.table,
            max_connections: self.max_connections,
            batch: self.batch,
            serializer,
            expire: self.expire,
            ids: self.ids,
            corrupt: self.corrupt,
            clock: self.clock,
        }
    }

    /// Take new ids from `ids` instead of the default generator (192 random bits). The ids
    /// must be storable: 1 to [`MAX_ID_LEN`] visible ASCII characters. The backend then
    /// reads any storable id a client sends (without one, ids outside the default format
    /// read as no session without a statement).
    pub fn with_id_generator(mut self, ids: IdGenerator) -> Self {
        self.ids = Some(ids);
        self
    }

    /// What a read does with a row the serializer cannot decode: by default
    /// ([`CorruptRecords::Discard`]) it reads as no session, with a `tracing` warning, and the
    /// row is deleted; [`CorruptRecords::Fail`] fails the read with [`Error::Serialization`]
    /// (see [Failures](crate#failures)).
    pub fn with_corrupt_records(mut self, policy: CorruptRecords) -> Self {
        self.corrupt = policy;
        self
    }

    /// How many of the pool's connections the backend may keep checked out between
    /// operations (see [One statement, one round trip](crate#one-statement-one-round-trip-per-operation)),
    /// which is also how many operations run at once; more wait, within the pool's acquire
    /// timeout. At least 1. The default is all of the pool's `max_connections` for a pool
    /// made from a URL ([`from_url`](SqlBackend::from_url)), half of them for one passed to
    /// [`from_pool`](SqlBackend::from_pool) or [`builder`](SqlBackend::builder).
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Expire rows by `clock` instead of the system clock: tests give the backend and the
    /// session layer one [manual](Clock::manual) clock and advance it instead of sleeping.
    /// Every statement passes the time as a parameter, so the database's own clock plays no
    /// part.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Delete at most `rows` expired rows per cleanup statement (at least 1; the default is
    /// [`DEFAULT_CLEANUP_BATCH`]).
    pub fn with_cleanup_batch_size(mut self, rows: u32) -> Self {
        self.batch = rows.max(1);
        self
    }
}
