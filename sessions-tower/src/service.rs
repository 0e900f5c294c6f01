use crate::layer::LayerState;
use http::header::{Entry, SET_COOKIE, VARY};
use http::{HeaderValue, Request, Response, StatusCode};
use sessionkit_core::adapter::{self, Commit, Context};
use sessionkit_core::{Error, LazySession, SessionBackend};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tower_service::Service;

/// The largest `Set-Cookie` value sent: browsers keep cookies up to 4096 bytes, and a larger
/// one would be dropped or cut without a word.
pub const MAX_SET_COOKIE_BYTES: usize = 4096;

/// `Cookie`, as a `Vary` value.
const VARY_COOKIE: HeaderValue = HeaderValue::from_static("Cookie");

/// The response future of [`SessionMiddleware`]: the inner service's answer, then the save.
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// The service [`SessionLayer`](crate::SessionLayer) builds: puts each request's
/// [`LazySession`] into the request's extensions and saves the session on the way out.
pub struct SessionMiddleware<S, B> {
    inner: S,
    state: Arc<LayerState<B>>,
}

impl<S, B> SessionMiddleware<S, B> {
    pub(crate) fn new(inner: S, state: Arc<LayerState<B>>) -> Self {
        SessionMiddleware { inner, state }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, B> Clone for SessionMiddleware<S, B> {
    fn clone(&self) -> Self {
        SessionMiddleware {
            inner: self.inner.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S: std::fmt::Debug, B> std::fmt::Debug for SessionMiddleware<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMiddleware")
            .field("inner", &self.inner)
            .field("config", &self.state.config)
            .finish()
    }
}

/// The path the client asked for: under axum's `Router::nest` the request's URI has lost the
/// prefix, and `OriginalUri` keeps the whole path.
fn client_path<T>(req: &Request<T>) -> &str {
    #[cfg(feature = "axum")]
    if let Some(original) = req.extensions().get::<axum::extract::OriginalUri>() {
        return original.path();
    }
    req.uri().path()
}

impl<S, B, ReqBody, ResBody> Service<Request<ReqBody>> for SessionMiddleware<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: SessionBackend,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &self.state.config;
        // Outside the cookie path there is no session at all: no cookie read, set or removed.
        let path = client_path(&req);
        if !config.covers(path) {
            return Box::pin(self.inner.call(req));
        }
        let autoload = config.autoloads(path);
        // A value longer than a cookie can be was never issued: it reaches no backend.
        let cookie = crate::cookie::request_value(req.headers(), &config.cookie_name, |value| {
            value.len() <= MAX_SET_COOKIE_BYTES
        });
        let context: Arc<dyn Context> = self.state.clone();
        let session = adapter::session(context, cookie);
        req.extensions_mut().insert(session.clone());
        let response = self.inner.call(req);
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            // Dropped before the answer (the client went away, the inner service failed):
            // the session is discarded, so a clone still held somewhere gets
            // `Error::Committed` on its next change instead of losing it silently.
            let mut guard = DiscardOnDrop {
                session,
                armed: true,
            };
            if autoload {
                if let Err(error) = guard.session.load().await {
                    tracing::error!(%error, "loading the session failed; answering 500");
                    return Ok(internal_error());
                }
            }
            let response = response.await?;
            guard.armed = false;
            let session = &guard.session;
            // A server error (a handler that failed, or panicked under `CatchPanic`) may have
            // left its changes half made: none of them is saved. A session nobody loaded has
            // nothing to save, and the response did not depend on it. Either way the session
            // is closed to later changes, and the response goes out as it is.
            if response.status().is_server_error() || !session.is_loaded() {
                adapter::discard(session);
                return Ok(response);
            }
            let saved = adapter::commit(session).await;
            Ok(state.config.respond(response, saved))
        })
    }
}

/// Discards the request's session if the response future is dropped before it answers.
struct DiscardOnDrop {
    session: LazySession,
    armed: bool,
}

impl Drop for DiscardOnDrop {
    fn drop(&mut self) {
        if self.armed {
            adapter::discard(&self.session);
        }
    }
}

fn internal_error<B: Default>() -> Response<B> {
    empty(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An answer of `status` with an empty body.
pub(crate) fn empty<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

/// Mark a response that depended on the session as varying with the cookie.
fn add_vary_cookie(headers: &mut http::HeaderMap) {
    let mut values = match headers.entry(VARY) {
        Entry::Vacant(entry) => {
            entry.insert(VARY_COOKIE);
            return;
        }
        Entry::Occupied(entry) => entry,
    };
    let present = values.iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|item| item.trim() == "*" || item.trim().eq_ignore_ascii_case("cookie"))
        })
    });
    if !present {
        values.append(VARY_COOKIE);
    }
}

impl crate::config::Config {
    /// The response once the session is saved: with its cookie and `Vary: Cookie`, or an
    /// empty 500 when saving failed.
    fn respond<B: Default>(
        &self,
        mut response: Response<B>,
        saved: Result<Commit, Error>,
    ) -> Response<B> {
        let commit = match saved {
            Ok(commit) => commit,
            Err(error) => {
                tracing::error!(%error, "saving the session failed; answering 500");
                return internal_error();
            }
        };
        let cookie = match &commit {
            Commit::Untouched => return response,
            Commit::Set { value, max_age } => match self.set_cookie(value, *max_age) {
                Some(header) if header.len() > MAX_SET_COOKIE_BYTES => {
                    let error = Error::CookieTooLarge {
                        size: header.len(),
                        limit: MAX_SET_COOKIE_BYTES,
                    };
                    tracing::error!(%error, cookie = %self.cookie_name, "session not saved; answering 500");
                    return internal_error();
                }
                Some(header) => Some(header),
                None => {
                    tracing::error!(
                        cookie = %self.cookie_name,
                        "the session backend returned a value that cannot be sent in a cookie"
                    );
                    return internal_error();
                }
            },
            Commit::Expire => Some(self.expire_cookie()),
            _ => None,
        };
        let headers = response.headers_mut();
        if let Some(cookie) = cookie {
            headers.append(SET_COOKIE, cookie);
        }
        add_vary_cookie(headers);
        response
    }
}
