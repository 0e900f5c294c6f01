//! The axum integration (feature `axum`): [`Session`] as an extractor, [`Error`] as a response.

use crate::{Error, LoadedSession, Session};
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

/// `Session` is an extractor: a handler that takes one gets the request's session from the
/// request's extensions, where the session layer put it; already loaded when the layer has
/// `autoload` on (so handlers that do not take it never cause a backend call).
///
/// Without a session layer around the route (or outside the layer's cookie path) the
/// rejection is [`Error::MissingLayer`], a 500 whose body says so; a failed autoload is a 500
/// too, with a `tracing` error. Take `Option<Session>` where a session is optional.
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match <Session as OptionalFromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => Err(Error::MissingLayer),
            Err(error) => Err(error),
        }
    }
}

/// `Option<Session>`: `None` where no session layer covers the request; a failed autoload
/// still rejects.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let Some(session) = parts.extensions.get::<Session>().cloned() else {
            return Ok(None);
        };
        if session.policy().autoload {
            // A failure answers a 500 (and is logged) through `Error`'s `IntoResponse`.
            session.load().await?;
        }
        Ok(Some(session))
    }
}

/// `LoadedSession` is an extractor: the request's session, loaded before the handler runs.
/// Rejections are [`Session`]'s: [`Error::MissingLayer`] without a layer, and a failed load as
/// a 500 (with a `tracing` error).
impl<S: Send + Sync> FromRequestParts<S> for LoadedSession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = <Session as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        session.load().await?;
        Ok(LoadedSession(session))
    }
}

/// Handlers can return session errors with `?`.
///
/// Mistakes in the application's own code ([`Error::NotLoaded`], [`Error::MissingLayer`],
/// [`Error::Committed`], [`Error::Config`], [`Error::Unsupported`], [`Error::InvalidUser`])
/// answer a 500 with the error's full message, which says how to fix it. Storage failures
/// (the store down, a record that cannot be encoded or decoded, a cookie too large) answer a
/// 500 with an empty body, exactly as the session layer answers a save that fails, so no
/// detail of the infrastructure reaches the client; the error is logged with `tracing`.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Error::NotLoaded
            | Error::MissingLayer
            | Error::Committed
            | Error::Config(_)
            | Error::Unsupported(_)
            | Error::InvalidUser { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
            }
            _ => {
                tracing::error!(error = %self, "the session could not be used; answering 500");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
