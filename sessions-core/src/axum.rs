//! The axum integration (feature `axum`): [`Session`] and [`LazySession`] as extractors,
//! [`Error`] as a response.

use crate::{Error, LazySession, Session};
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

/// `LazySession` is an extractor: the request's session as the session layer put it into the
/// request's extensions, not read yet (unless the layer's `autoload` read it). Without a
/// session layer around the route (or outside the layer's cookie path) the rejection is
/// [`Error::MissingLayer`], a 500 whose body says so.
impl<S: Send + Sync> FromRequestParts<S> for LazySession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<LazySession>()
            .cloned()
            .ok_or(Error::MissingLayer)
    }
}

/// `Option<LazySession>`: `None` where no session layer covers the request.
impl<S: Send + Sync> OptionalFromRequestParts<S> for LazySession {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<LazySession>().cloned())
    }
}

/// `Session` is an extractor: the request's session, loaded before the handler runs (a
/// client without a cookie costs no backend call). Without a session layer the rejection is
/// [`Error::MissingLayer`]; a failed load answers an empty 500 and logs a `tracing` error.
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let lazy = <LazySession as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        lazy.load().await
    }
}

/// `Option<Session>`: `None` where no session layer covers the request, the loaded session
/// otherwise; a failed load still rejects.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<LazySession>().cloned() {
            Some(lazy) => lazy.load().await.map(Some),
            None => Ok(None),
        }
    }
}

/// Handlers can return session errors with `?`.
///
/// A request that waited its whole wait for its session's lock ([`Error::LockTimeout`])
/// answers `503 Service Unavailable` with `Retry-After: 1`.
///
/// Mistakes in the application's own code ([`Error::MissingLayer`], [`Error::Committed`],
/// [`Error::Config`], [`Error::Unsupported`], [`Error::InvalidUser`]) answer a 500 with the
/// error's full message, which says how to fix it. Storage failures (the store down, a record
/// that cannot be encoded or decoded, a cookie too large) answer a 500 with an empty body,
/// exactly as the session layer answers a save that fails, so no detail of the
/// infrastructure reaches the client; the error is logged with `tracing`.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Error::MissingLayer
            | Error::Committed
            | Error::Config(_)
            | Error::Unsupported(_)
            | Error::InvalidUser { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
            }
            Error::LockTimeout { .. } => {
                tracing::warn!(error = %self, "answering 503");
                lock_timeout_response()
            }
            _ => {
                tracing::error!(error = %self, "the session could not be used; answering 500");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// What a request that waited its whole wait for its session's lock answers: `503 Service
/// Unavailable` with `Retry-After: 1` and an empty body. The server is busy with other
/// requests of this session, a temporary condition the client may retry after; a `409
/// Conflict` would say the request itself clashes with the resource's state, which it does
/// not, and a `500` would report a fault where there is none.
fn lock_timeout_response() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(http::header::RETRY_AFTER, "1")],
    )
        .into_response()
}
