//! What every backend that stores records as bytes under ids needs (Redis, SQL, files): the
//! masked id for messages, the handling of records that no longer decode, and creation under
//! a fresh id that never overwrites.
//!
//! ```
//! use sessionkit_core::store::{self, CorruptRecords};
//! use sessionkit_core::{Error, JsonSerializer, SessionData};
//!
//! // A read: bytes from the store, decoded, a corrupt record read as no session.
//! let bytes = b"not a record".to_vec();
//! let key = format!("session:{}", store::masked("AbCdEfGhIjKlMnOp"));
//! let found = store::decode(&JsonSerializer, &bytes, CorruptRecords::Discard, &key)?;
//! assert_eq!(found, store::Decoded::Corrupt); // the caller removes the record
//! # Ok::<(), Error>(())
//! ```

pub use crate::backend::emptying;
use crate::error::BoxError;
use crate::{Error, Serializer, SessionData};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError};

/// How a backend treats a stored record its serializer cannot decode (written by another
/// serializer or another application under the same prefix, a stored type that changed, a
/// manual edit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptRecords {
    /// The default: the record reads as no session, a `tracing` warning names the masked key
    /// and the decode error, and the backend removes the record. The client gets a fresh
    /// session, never a 500 on every request until the record expires.
    #[default]
    Discard,
    /// The read fails with [`Error::Serialization`], whose source is a [`CorruptRecord`]
    /// naming the record: for deployments that would rather see a serializer mix-up at once
    /// than lose the data.
    Fail,
}

/// What [`decode`] made of a stored record.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// The record.
    Record(SessionData),
    /// It does not decode, and the policy is [`CorruptRecords::Discard`]: a warning was
    /// logged; remove the record and read it as missing.
    Corrupt,
}

/// Decode `bytes`, read from the record that `location` names (a masked key, never the whole
/// id), under `policy`.
///
/// # Errors
///
/// With [`CorruptRecords::Fail`], bytes that do not decode are [`Error::Serialization`]
/// whose source is a [`CorruptRecord`].
pub fn decode<S: Serializer + ?Sized>(
    serializer: &S,
    bytes: &[u8],
    policy: CorruptRecords,
    location: &dyn fmt::Display,
) -> Result<Decoded, Error> {
    match serializer.deserialize(bytes) {
        Ok(data) => Ok(Decoded::Record(data)),
        Err(error) => corrupt(error, policy, location),
    }
}

/// What a record that cannot be read (`error` says why) becomes under `policy`: what
/// [`decode`] does when the serializer fails, for stores that find a record unreadable before
/// it reaches the serializer (a damaged header, say).
///
/// # Errors
///
/// With [`CorruptRecords::Fail`]: [`Error::Serialization`] whose source is a
/// [`CorruptRecord`] holding `error`.
pub fn corrupt(
    error: Error,
    policy: CorruptRecords,
    location: &dyn fmt::Display,
) -> Result<Decoded, Error> {
    match policy {
        CorruptRecords::Discard => {
            tracing::warn!(
                record = %location,
                %error,
                "a stored session record cannot be decoded; it is removed and the client \
                 starts a fresh session"
            );
            Ok(Decoded::Corrupt)
        }
        CorruptRecords::Fail => Err(CorruptRecord::wrap(location.to_string(), error)),
    }
}

/// Whether `value` has the form of an id [`generate_id`](crate::generate_id) makes: 16 to 256
/// characters of URL-safe base64 (`A–Z a–z 0–9 - _`). A backend that stores ids in this form
/// checks a client's value with it before a read costs a round trip.
///
/// ```
/// use sessionkit_core::{generate_id, store::in_generated_format};
/// assert!(in_generated_format(&generate_id()));
/// assert!(!in_generated_format("short") && !in_generated_format("has space in it at all"));
/// ```
pub fn in_generated_format(value: &str) -> bool {
    (16..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A session id for messages and logs: its first few characters (at most six, and at most
/// half of it), never the whole id: ids are bearer secrets.
///
/// ```
/// assert_eq!(sessionkit_core::store::masked("AbCdEfGhIjKlMnOp"), "AbCdEf…");
/// ```
pub fn masked(id: &str) -> String {
    let chars = id.chars().count();
    let shown = 6.min(chars / 2);
    let visible: String = id.chars().take(shown).collect();
    if shown < chars {
        format!("{visible}…")
    } else {
        visible
    }
}

/// How long a compare-and-swap save goes on applying its changes again while other saves of
/// the same session come in between (a page firing many requests at once), before it fails.
pub const CONTENDED_SAVE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// The tries of one compare-and-swap save (or revocation) that other writers keep beating:
/// bounded by [`CONTENDED_SAVE_PATIENCE`], not by a count, so any burst of saves to one
/// session gets through in turn. A save tells it of each collision
/// ([`collided`](Self::collided)), which waits before the next try.
#[derive(Debug)]
pub struct Contention {
    started: std::time::Instant,
    tries: u32,
    /// This process's turn on the session, taken at the first collision.
    turn: Option<Turn>,
}

impl Default for Contention {
    fn default() -> Self {
        Contention {
            started: std::time::Instant::now(),
            tries: 0,
            turn: None,
        }
    }
}

impl Contention {
    /// Count one more try; `false` when the patience is spent and the save should fail.
    pub fn try_again(&mut self) -> bool {
        self.tries += 1;
        self.started.elapsed() < CONTENDED_SAVE_PATIENCE
    }

    /// How many tries were counted.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// Another save of the session `id` came in between: wait before trying again. The
    /// first collision waits for this process's turn on the session in `turns` (held until
    /// the save is done); later ones, for a random pause whose ceiling doubles with each try,
    /// up to 20 ms, so writers of other processes spread out instead of colliding again.
    pub async fn collided(&mut self, turns: &Arc<Turns>, id: &str) {
        if self.turn.is_none() {
            self.turn = Some(turns.take(id).await);
            return;
        }
        let pause = self.pause();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }

    /// The pause before the next try (see [`collided`](Self::collided)).
    fn pause(&self) -> std::time::Duration {
        if self.tries < 3 {
            return std::time::Duration::ZERO;
        }
        let ceiling_us = (250u64 << (self.tries - 3).min(7)).min(20_000);
        std::time::Duration::from_micros(random_below(ceiling_us).unwrap_or(0))
    }
}

/// A random number below `ceiling` (at least 1) from the operating system's generator, for
/// the pauses of writers and waiters that must spread out; `None` if it cannot be read.
pub(crate) fn random_below(ceiling: u64) -> Option<u64> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).ok()?;
    Some(u64::from_le_bytes(random) % ceiling.max(1))
}

/// Where the compare-and-swap saves of one process take turns on a session that other saves
/// keep changing under them (a burst of parallel requests of one page): after its first
/// collision a save waits for its turn, so the process's writers of that session retry one
/// at a time instead of all colliding again and again. Saves of other processes still
/// resolve by compare-and-swap. Uncontended saves never come here.
#[derive(Debug, Default)]
pub struct Turns {
    queues: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A turn on one session, from [`Turns::take`] (a save's, or a locked request's); the next
/// turn starts when it is dropped.
#[derive(Debug)]
pub struct Turn {
    turns: Arc<Turns>,
    id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turns {
    /// Wait for this process's turn on the session `id` (first come, first served).
    pub async fn take(self: &Arc<Self>, id: &str) -> Turn {
        let queue = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(queues.entry(id.to_owned()).or_default())
        };
        Turn {
            turns: Arc::clone(self),
            id: id.to_owned(),
            guard: Some(queue.lock_owned().await),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut queues = self
            .turns
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Nobody else holds or waits for this session's queue: it goes.
        if queues
            .get(&self.id)
            .is_some_and(|queue| Arc::strong_count(queue) == 1)
        {
            queues.remove(&self.id);
        }
    }
}

/// How many fresh ids [`create`] tries before it gives up.
pub const CREATE_ATTEMPTS: usize = 16;

/// Create a record under a fresh id: `generate` mints an id, `try_create` stores the record
/// under it unless the id is taken (`Ok(false)`: an atomic insert-if-absent, such as Redis
/// `SET NX` or an SQL insert that fails on conflict). Never overwrites; on a collision it mints
/// again, up to [`CREATE_ATTEMPTS`] times. Returns the id the record was stored under.
///
/// # Errors
///
/// What `try_create` returns, or [`Error::Backend`] naming `store` when every id was taken
/// (the id generator repeats itself).
pub async fn create<F, Fut>(
    store: &str,
    generate: impl Fn() -> String,
    mut try_create: F,
) -> Result<String, Error>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<bool, Error>>,
{
    for _ in 0..CREATE_ATTEMPTS {
        let id = generate();
        if try_create(id.clone()).await? {
            return Ok(id);
        }
    }
    Err(Error::backend(format!(
        "{store}: {CREATE_ATTEMPTS} fresh session ids in a row were already taken; the id \
         generator repeats itself"
    )))
}

/// A stored record that could not be decoded: the source of the [`Error::Serialization`] a
/// read returns for it under [`CorruptRecords::Fail`].
///
/// ```
/// # use sessionkit_core::Error;
/// # fn handle(e: Error) {
/// if let Error::Serialization { source, .. } = &e {
///     if let Some(corrupt) = source.downcast_ref::<sessionkit_core::store::CorruptRecord>() {
///         eprintln!("corrupt session record: {}", corrupt.location());
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct CorruptRecord {
    location: String,
    source: BoxError,
}

impl CorruptRecord {
    fn wrap(location: String, error: Error) -> Error {
        let source: BoxError = match error {
            Error::Serialization { source, .. } => source,
            other => Box::new(other),
        };
        Error::Serialization {
            action: "decoded",
            source: Box::new(CorruptRecord { location, source }),
        }
    }

    /// Where the record is, its id masked: `redis key session:AbCdEf…`, `table "sessions",
    /// session AbCdEf…`.
    pub fn location(&self) -> &str {
        &self.location
    }
}

impl fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the record at {} is not a session record this serializer can read (written by \
             another serializer or application?): {}",
            self.location, self.source
        )
    }
}

impl std::error::Error for CorruptRecord {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JsonSerializer;
    use std::cell::Cell;

    #[test]
    fn masked_ids_show_at_most_six_characters() {
        assert_eq!(masked("AbCdEfGhIjKlMnOpQrStUvWxYz012345"), "AbCdEf…");
        assert_eq!(masked("abcd"), "ab…");
        assert_eq!(masked("ключключ"), "ключ…");
        assert_eq!(masked(""), "");
    }

    #[test]
    fn a_corrupt_record_is_discarded_or_fails_as_asked() {
        let good = JsonSerializer.serialize(&SessionData::default()).unwrap();
        for policy in [CorruptRecords::Discard, CorruptRecords::Fail] {
            assert!(matches!(
                decode(&JsonSerializer, &good, policy, &"k"),
                Ok(Decoded::Record(_))
            ));
        }
        assert_eq!(
            decode(&JsonSerializer, b"junk", CorruptRecords::default(), &"k").unwrap(),
            Decoded::Corrupt
        );
        let Err(Error::Serialization { source, .. }) = decode(
            &JsonSerializer,
            b"junk",
            CorruptRecords::Fail,
            &"key p:AbC…",
        ) else {
            panic!("strict mode fails the read")
        };
        let corrupt = source.downcast_ref::<CorruptRecord>().unwrap();
        assert_eq!(corrupt.location(), "key p:AbC…");
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn create_mints_again_on_a_collision_and_gives_up_in_the_end() {
        let n = Cell::new(0);
        let generate = || {
            n.set(n.get() + 1);
            format!("id-{}", n.get())
        };
        let created = block_on(create(
            "test",
            generate,
            |id| async move { Ok(id != "id-1") },
        ));
        assert_eq!(created.unwrap(), "id-2");
        let error = block_on(create(
            "test",
            || "same".to_owned(),
            |_| async { Ok(false) },
        ));
        assert!(error.unwrap_err().to_string().contains("repeats itself"));
    }
}
