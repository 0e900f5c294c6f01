//! The axum integration (feature `axum`): [`Session`] as an extractor, [`Error`] as a response.

use crate::{Error, Session};
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

/// `Session` is an extractor: a handler that takes one gets the request's session, already
/// loaded when the layer has `autoload` on (so handlers that do not take it never cause a
/// backend call).
///
/// Without a session layer around the route the rejection is a 500 whose body says so; a
/// failed autoload is a 500 too, with a `tracing` error.
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Session::current_autoloaded().await.inspect_err(|error| {
            if !matches!(error, Error::MissingLayer) {
                tracing::error!(%error, "session autoload failed; answering 500");
            }
        })
    }
}

/// Handlers can return session errors with `?`.
///
/// Mistakes in the application's own code ([`Error::NotLoaded`], [`Error::MissingLayer`])
/// answer with the error's full message, which says how to fix it; storage failures answer
/// with a short message only, so no detail of the infrastructure reaches the client.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = match &self {
            Error::NotLoaded | Error::MissingLayer | Error::Config(_) => self.to_string(),
            _ => "the session could not be used".to_owned(),
        };
        (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
    }
}
