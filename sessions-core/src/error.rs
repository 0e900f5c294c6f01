use std::error::Error as StdError;

/// A boxed error from a storage backend or serializer, kept as the [`Error`]'s source.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong with a session, named by its cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage backend failed: a server that cannot be reached, a pool that timed out,
    /// a query that was refused. The message says which backend and what it was doing.
    #[error("session backend error: {message}")]
    Backend {
        /// What the backend was doing when it failed.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// Session data could not be turned into bytes, or bytes back into session data.
    #[error("session data could not be {action}: {source}")]
    Serialization {
        /// `"encoded"` or `"decoded"`.
        action: &'static str,
        /// The serializer's own error.
        #[source]
        source: BoxError,
    },

    /// An update was asked for a session whose record no longer exists: it was removed
    /// (a logout in a parallel request) or it expired. The session is not brought back.
    #[error(
        "the session no longer exists in the backend (removed or expired); it was not written back"
    )]
    SessionGone,

    /// A cookie-carried session would exceed what browsers accept.
    #[error(
        "the session cookie would be {size} bytes, over the {limit}-byte limit browsers accept"
    )]
    CookieTooLarge {
        /// The measured size of the whole `Set-Cookie` value.
        size: usize,
        /// The limit that was exceeded.
        limit: usize,
    },

    /// No session layer handled this request, so there is no session to give the handler.
    #[error(
        "no session on this request: wrap the route in `SessionLayer` (if the layer has a cookie \
         `path`, the request path must be inside it); a plain tower service finds the \
         `LazySession` in the request's extensions"
    )]
    MissingLayer,

    /// The session was changed after it was saved with its response (a task spawned by the
    /// handler, a streaming body): the change could not reach the store or the client.
    #[error(
        "the session was already saved with its response; change it inside the handler, or \
         open it again through the layer (`SessionLayer::open`) for work after the response"
    )]
    Committed,

    /// The backend cannot do what was asked: listing or revoking a user's sessions on a
    /// backend that keeps no index of them (the cookie backend, whose sessions live only in
    /// their cookies). The message says what instead.
    #[error("not supported by this session backend: {0}")]
    Unsupported(String),

    /// A user given to [`Session::set_user`](crate::Session::set_user) that cannot be stored:
    /// empty, longer than [`MAX_USER_LEN`](crate::MAX_USER_LEN) bytes, or holding a NUL
    /// character (which PostgreSQL text cannot store).
    #[error(
        "a session's user must be 1 to {max} bytes long, without NUL characters; this one is \
         {len} bytes",
        max = crate::MAX_USER_LEN
    )]
    InvalidUser {
        /// The length given, in bytes.
        len: usize,
    },

    /// The session or layer was configured with values that cannot work.
    #[error("invalid session configuration: {0}")]
    Config(String),

    /// A request on a locked route did not get its session's lock within the route's wait:
    /// other requests of the same session held it all that time. Nothing of the request ran.
    #[error("the session's lock was held by other requests for the whole wait ({waited:?})")]
    LockTimeout {
        /// How long the request waited.
        waited: std::time::Duration,
    },

    /// A save on a locked route found that its request no longer held the session's lock:
    /// the handler outlived the lock's lease, and another request may have taken the lock and
    /// saved since. Nothing was stored, so that request's work is kept.
    #[error(
        "the session's lock was lost before the save (the handler outlived the lease): nothing \
         was stored"
    )]
    LockLost,
}

impl Error {
    /// A backend error with a message and no underlying source.
    pub fn backend(message: impl Into<String>) -> Self {
        Error::Backend {
            message: message.into(),
            source: None,
        }
    }

    /// A backend error with a message and the error that caused it.
    pub fn backend_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An error while encoding session data.
    pub fn encode(source: impl Into<BoxError>) -> Self {
        Error::Serialization {
            action: "encoded",
            source: source.into(),
        }
    }

    /// An error while decoding session data.
    pub fn decode(source: impl Into<BoxError>) -> Self {
        Error::Serialization {
            action: "decoded",
            source: source.into(),
        }
    }
}
