//! A session backend written the way a third-party crate would write one: it depends on
//! `sessionkit-core` alone, implements [`SessionBackend`], and proves itself with the
//! conformance suite (see `tests/conformance.rs`).
//!
//! [`FileBackend`] keeps one file per session in a directory:
//!
//! ```
//! use custom_backend::FileBackend;
//! use sessionkit_core::{SessionBackend, SessionData};
//! use std::time::Duration;
//!
//! # let dir = std::env::temp_dir().join(format!("custom-backend-doc-{}", std::process::id()));
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let backend = FileBackend::new(&dir)?;
//! let id = backend.create(&SessionData::new(Default::default()), Some(Duration::from_secs(3600))).await?;
//! assert!(backend.exists(&id).await?);
//! backend.remove(&id).await?;
//! assert!(!backend.exists(&id).await?);
//! # Ok::<(), sessionkit_core::Error>(()) }).unwrap();
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
//!
//! With the middleware from `sessionkit-tower`, like any other backend:
//!
//! ```no_run
//! # use custom_backend::FileBackend;
//! let layer = sessionkit_tower::SessionLayer::new(FileBackend::new("/var/lib/myapp/sessions")?);
//! # Ok::<(), sessionkit_core::Error>(())
//! ```
//!
//! # How it keeps the backend contract
//!
//! | rule | how |
//! |---|---|
//! | a create never overwrites | the file is opened with `OpenOptions::create_new`, which fails when the id is taken; a fresh id is minted then |
//! | an update never brings a session back | under the directory's lock, the update checks that the file is still there and not expired, then replaces it |
//! | overlapping saves keep each other's keys | under the directory's lock, a save reads the stored record, applies the request's changes to it and replaces it |
//! | readers never see half a record | an update writes a temporary file and renames it over the old one, which is atomic |
//! | the TTL is honoured | each file starts with its deadline; a record past it reads as missing, and [`purge_expired`](FileBackend::purge_expired) deletes it |
//! | bad ids are harmless | an id is used as a file name only when it is 16 to 128 URL-safe characters, so `../x` or an empty id never reaches the file system |
//!
//! Updates and removes take an advisory lock on the directory's `.lock` file
//! ([`File::lock`](std::fs::File::lock)), so several processes may share one directory on a
//! local file system. Reads take no lock. Blocking file I/O runs on tokio's blocking pool.
//!
//! # File format
//!
//! `<id>.session` holds one header line, `sessions-file v1 <deadline>\n`, where the deadline
//! is in Unix milliseconds or `never`, then the record as the [`Serializer`] encoded it
//! ([`JsonSerializer`] unless [`with_serializer`](FileBackend::with_serializer) sets
//! another).
//!
//! # Features
//!
//! This package has no Cargo features.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use sessionkit_core::store::{self, CorruptRecords, Decoded};
use sessionkit_core::{
    Changes, Clock, Error, IdGenerator, JsonSerializer, Serializer, SessionBackend, SessionData,
    async_trait,
};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const HEADER: &str = "sessions-file v1 ";
const SUFFIX: &str = ".session";
const LOCK_FILE: &str = ".lock";
const TEMP_PREFIX: &str = ".tmp-";
/// Temporary files older than this were left by a crash; the purge deletes them.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Sessions stored as files in a directory, one file per session. See the [crate docs](crate).
///
/// Cloning is cheap: clones share the directory and settings.
pub struct FileBackend<S = JsonSerializer> {
    dir: Arc<Path>,
    serializer: Arc<S>,
    ids: Option<IdGenerator>,
    corrupt: CorruptRecords,
}

impl<S> Clone for FileBackend<S> {
    fn clone(&self) -> Self {
        FileBackend {
            dir: Arc::clone(&self.dir),
            serializer: Arc::clone(&self.serializer),
            ids: self.ids.clone(),
            corrupt: self.corrupt,
        }
    }
}

impl<S> fmt::Debug for FileBackend<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("dir", &self.dir)
            .field("serializer", &std::any::type_name::<S>())
            .finish_non_exhaustive()
    }
}

impl FileBackend {
    /// Sessions in `dir`, created (with its parents) when missing, encoded as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the directory cannot be created.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir)
            .map_err(|e| io_error(format!("cannot create {}", dir.display()), e))?;
        Ok(FileBackend {
            dir: dir.into(),
            serializer: Arc::new(JsonSerializer),
            ids: None,
            corrupt: CorruptRecords::default(),
        })
    }
}

impl<S> FileBackend<S> {
    /// Encode records with `serializer` instead. Records written in one format do not read
    /// in another: choose before the first session is stored.
    pub fn with_serializer<T: Serializer>(self, serializer: T) -> FileBackend<T> {
        FileBackend {
            dir: self.dir,
            serializer: Arc::new(serializer),
            ids: self.ids,
            corrupt: self.corrupt,
        }
    }

    /// What a read does with a file it cannot decode: by default it reads as no session, with
    /// a `tracing` warning, and the file is deleted; [`CorruptRecords::Fail`] fails the read
    /// with [`Error::Serialization`].
    #[must_use]
    pub fn with_corrupt_records(mut self, policy: CorruptRecords) -> Self {
        self.corrupt = policy;
        self
    }

    /// Take new ids from `ids` instead of the default generator (192 random bits). The ids
    /// must be 16 to 128 characters of `A–Z a–z 0–9 - _`.
    #[must_use]
    pub fn with_id_generator(mut self, ids: IdGenerator) -> Self {
        self.ids = Some(ids);
        self
    }

    /// The directory the sessions are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    /// An exclusive lock on the directory, held until the returned file is dropped. Each call
    /// opens the lock file anew: the lock belongs to the open file, so two tasks of one
    /// process exclude each other as two processes do.
    fn lock(&self) -> io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK_FILE))?;
        file.lock()?;
        Ok(file)
    }
}

impl<S: Serializer> FileBackend<S> {
    /// Whether a live session file is stored under `id`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the directory cannot be read.
    pub async fn exists(&self, id: &str) -> Result<bool, Error> {
        let (this, id) = (self.clone(), id.to_owned());
        blocking(move || this.exists_blocking(&id)).await
    }

    /// Replace the session stored under `id` with `data` as it is, outside the session
    /// layer's merging saves: for tools and tests.
    ///
    /// # Errors
    ///
    /// [`Error::SessionGone`] when no session is stored under `id`; [`Error::Backend`] when
    /// the file cannot be written.
    pub async fn update(
        &self,
        id: &str,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        let (this, id, data) = (self.clone(), id.to_owned(), data.clone());
        blocking(move || this.update_blocking(&id, &data, ttl)).await
    }

    /// Delete every record past its deadline, and temporary files a crash left behind;
    /// returns how many records went. Call it now and then (a daily task is plenty: expired
    /// records read as missing whether or not they were purged).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the directory cannot be listed or a file not removed.
    pub async fn purge_expired(&self) -> Result<u64, Error> {
        let this = self.clone();
        blocking(move || this.purge_blocking()).await
    }

    fn purge_blocking(&self) -> Result<u64, Error> {
        let _lock = self.lock().map_err(|e| io_error("purge: lock", e))?;
        let entries = fs::read_dir(&self.dir).map_err(|e| io_error("purge: list", e))?;
        let now = SystemTime::now();
        let mut purged = 0;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("purge: list", e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.starts_with(TEMP_PREFIX) {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMP);
                if old {
                    remove_if_present(&path).map_err(|e| io_error("purge: remove", e))?;
                }
            } else if name.ends_with(SUFFIX) && matches!(read_deadline(&path), Ok(Some(Expired))) {
                remove_if_present(&path).map_err(|e| io_error("purge: remove", e))?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// The live record of `id` as stored: its encoded bytes, or why it cannot be read.
    fn read_blocking(&self, id: &str) -> Result<Stored, Error> {
        if !usable_id(id) {
            return Ok(Stored::Missing);
        }
        let mut bytes = match fs::read(self.path(id)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Stored::Missing),
            Err(e) => return Err(io_error("read", e)),
        };
        let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
            // An empty file is a create that has not written its record yet.
            return Ok(if bytes.is_empty() {
                Stored::Missing
            } else {
                Stored::Unreadable("a session file without a header line")
            });
        };
        Ok(match parse_header(&bytes[..newline]) {
            Some(Live) => {
                bytes.drain(..=newline);
                Stored::Record(bytes)
            }
            Some(Expired) => Stored::Missing,
            None => Stored::Unreadable("a session file with a malformed header"),
        })
    }

    /// Store `record` under `id` unless a file of that name exists (`Ok(false)`).
    fn create_blocking(&self, id: &str, record: &[u8]) -> Result<bool, Error> {
        if !usable_id(id) {
            return Err(Error::Config(
                "the id generator made an id that is not 16 to 128 URL-safe characters".into(),
            ));
        }
        let path = self.path(id);
        // `create_new` is the whole "never overwrite" rule: the open fails when a file of
        // that name exists, decided by the file system in one step.
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_error("create", e)),
        };
        if let Err(e) = file.write_all(record) {
            let _ = fs::remove_file(&path);
            return Err(io_error("create: write", e));
        }
        Ok(true)
    }

    fn update_blocking(
        &self,
        id: &str,
        data: &SessionData,
        ttl: Option<Duration>,
    ) -> Result<String, Error> {
        if !usable_id(id) {
            return Err(Error::SessionGone);
        }
        let record = self.encode(data, ttl)?;
        let path = self.path(id);
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}", sessionkit_core::generate_id()));
        fs::write(&temp, &record).map_err(|e| io_error("update: write", e))?;
        let replaced = (|| {
            // Under the lock no remove can slip in between the check and the rename: a
            // session removed (or expired) before it is not brought back.
            let _lock = self.lock().map_err(|e| io_error("update: lock", e))?;
            match read_deadline(&path) {
                Ok(Some(Live)) => {}
                Ok(Some(Expired) | None) => return Err(Error::SessionGone),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::SessionGone),
                Err(e) => return Err(io_error("update: read", e)),
            }
            fs::rename(&temp, &path).map_err(|e| io_error("update: rename", e))
        })();
        if replaced.is_err() {
            let _ = fs::remove_file(&temp);
        }
        replaced.map(|()| id.to_owned())
    }

    /// Apply `changes` to the record as stored, under the directory's lock so no other save,
    /// update or remove slips in between: the read, the merge and the rename are one step for
    /// every other writer.
    fn apply_blocking(
        &self,
        id: &str,
        changes: &Changes,
        accessed: u64,
        ttl: Option<Duration>,
    ) -> Result<Option<SessionData>, Error> {
        if !usable_id(id) {
            return Err(Error::SessionGone);
        }
        let _lock = self.lock().map_err(|e| io_error("save: lock", e))?;
        let stored = match self.read_blocking(id)? {
            Stored::Record(bytes) => self.serializer.deserialize(&bytes)?,
            Stored::Missing => return Err(Error::SessionGone),
            Stored::Unreadable(why) => return Err(Error::decode(why)),
        };
        let merged = changes.applied_to(&stored, accessed);
        let path = self.path(id);
        if merged.is_empty() {
            remove_if_present(&path).map_err(|e| io_error("save: remove", e))?;
            return Ok(None);
        }
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}", sessionkit_core::generate_id()));
        fs::write(&temp, self.encode(&merged, ttl)?).map_err(|e| io_error("save: write", e))?;
        if let Err(e) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(io_error("save: rename", e));
        }
        Ok(Some(merged))
    }

    fn remove_blocking(&self, id: &str) -> Result<(), Error> {
        if !usable_id(id) {
            return Ok(());
        }
        let _lock = self.lock().map_err(|e| io_error("remove: lock", e))?;
        remove_if_present(&self.path(id)).map_err(|e| io_error("remove", e))
    }

    fn exists_blocking(&self, id: &str) -> Result<bool, Error> {
        if !usable_id(id) {
            return Ok(false);
        }
        match read_deadline(&self.path(id)) {
            Ok(deadline) => Ok(deadline == Some(Live)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("exists", e)),
        }
    }

    fn encode(&self, data: &SessionData, ttl: Option<Duration>) -> Result<Vec<u8>, Error> {
        let deadline = match ttl {
            Some(ttl) => {
                let at = Clock::system()
                    .unix_millis()
                    .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
                at.to_string()
            }
            None => "never".to_owned(),
        };
        let mut record = format!("{HEADER}{deadline}\n").into_bytes();
        record.extend(self.serializer.serialize(data)?);
        Ok(record)
    }
}

#[async_trait]
impl<S: Serializer> SessionBackend for FileBackend<S> {
    async fn read(&self, id: &str) -> Result<Option<SessionData>, Error> {
        let (this, owned) = (self.clone(), id.to_owned());
        let stored = blocking(move || this.read_blocking(&owned)).await?;
        let file = format!("file {}{SUFFIX}", store::masked(id));
        let decoded = match stored {
            Stored::Missing => return Ok(None),
            Stored::Record(bytes) => store::decode(&*self.serializer, &bytes, self.corrupt, &file)?,
            Stored::Unreadable(why) => store::corrupt(Error::decode(why), self.corrupt, &file)?,
        };
        match decoded {
            Decoded::Record(data) => Ok(Some(data)),
            Decoded::Corrupt => {
                self.remove(id).await?;
                Ok(None)
            }
        }
    }

    async fn create(&self, data: &SessionData, ttl: Option<Duration>) -> Result<String, Error> {
        let record = Arc::new(self.encode(data, ttl)?);
        store::create(
            "files",
            || self.generate_id(),
            |id| {
                let (this, record) = (self.clone(), Arc::clone(&record));
                blocking(move || this.create_blocking(&id, &record))
            },
        )
        .await
    }

    /// Atomic across processes: the changes go onto the stored record under the directory's
    /// lock.
    async fn apply(
        &self,
        id: &str,
        session: &SessionData,
        changes: &Changes,
        ttl: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        let (this, owned, changes) = (self.clone(), id.to_owned(), changes.clone());
        let accessed = session.last_access_unix();
        let saved = blocking(move || this.apply_blocking(&owned, &changes, accessed, ttl)).await?;
        Ok(saved.map(|_| id.to_owned()))
    }

    async fn remove(&self, id: &str) -> Result<(), Error> {
        let (this, id) = (self.clone(), id.to_owned());
        blocking(move || this.remove_blocking(&id)).await
    }

    fn generate_id(&self) -> String {
        match &self.ids {
            Some(ids) => ids(),
            None => sessionkit_core::generate_id(),
        }
    }
}

/// A session file as read: what [`FileBackend::read`] decodes.
enum Stored {
    /// No live record: no file, an expired one, or a create still writing.
    Missing,
    /// The encoded record after the header line.
    Record(Vec<u8>),
    /// A file that is not a session file, and why.
    Unreadable(&'static str),
}

/// Whether `id` may become a file name: 16 to 128 characters of `A–Z a–z 0–9 - _`. That
/// keeps out path separators, `..`, the hidden `.lock` and `.tmp-` files, and names longer
/// than file systems allow.
fn usable_id(id: &str) -> bool {
    (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Debug, PartialEq, Eq)]
enum Deadline {
    Live,
    Expired,
}
use Deadline::{Expired, Live};

/// The header line's deadline against the clock; `None` when it is not a header.
fn parse_header(line: &[u8]) -> Option<Deadline> {
    let rest = std::str::from_utf8(line).ok()?.strip_prefix(HEADER)?;
    if rest == "never" {
        return Some(Live);
    }
    let at: u64 = rest.parse().ok()?;
    Some(if at > Clock::system().unix_millis() {
        Live
    } else {
        Expired
    })
}

/// The deadline of the record at `path`, reading its first line only. `Ok(None)`: not a
/// record (yet): an empty file, or one without a valid header.
fn read_deadline(path: &Path) -> io::Result<Option<Deadline>> {
    let mut line = Vec::with_capacity(64);
    BufReader::new(File::open(path)?)
        .take(256)
        .read_until(b'\n', &mut line)?;
    match line.strip_suffix(b"\n") {
        Some(header) => Ok(parse_header(header)),
        None => Ok(None),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn io_error(what: impl fmt::Display, e: io::Error) -> Error {
    Error::backend_with(format!("files: {what} failed: {e}"), e)
}

/// Run blocking file I/O on tokio's blocking pool, so it never stalls the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::backend(format!("files: the I/O task failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_become_file_names() {
        assert!(usable_id(&sessionkit_core::generate_id()));
        for bad in [
            "",
            "short",
            "../../etc/passwd",
            ".lock",
            ".tmp-aaaaaaaaaaaaaaaa",
        ] {
            assert!(!usable_id(bad), "{bad:?}");
        }
        assert!(!usable_id(&"a".repeat(129)));
    }

    #[test]
    fn headers_carry_the_deadline() {
        assert_eq!(parse_header(b"sessions-file v1 never"), Some(Live));
        assert_eq!(parse_header(b"sessions-file v1 1"), Some(Expired));
        let later = (Clock::system().unix_millis() + 60_000).to_string();
        assert_eq!(
            parse_header(format!("sessions-file v1 {later}").as_bytes()),
            Some(Live)
        );
        assert_eq!(parse_header(b"sessions-file v2 never"), None);
        assert_eq!(parse_header(b"{\"created\":1}"), None);
    }
}
