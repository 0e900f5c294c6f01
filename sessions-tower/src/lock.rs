//! Locked routes: [`SessionLockLayer`], from [`SessionLayer::lock`](crate::SessionLayer::lock).

use crate::service::{ResponseFuture, empty};
use http::{HeaderValue, Request, Response, StatusCode};
use sessionkit_core::adapter;
use sessionkit_core::{Error, LazySession, Locking};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// Marks routes whose requests of one session run one at a time, across processes and
/// machines: a request takes its session's lock (kept by the backend) before its handler
/// runs, and gives it back with its save. Made by
/// [`SessionLayer::lock`](crate::SessionLayer::lock), which refuses a backend that cannot
/// lock; put it on the routes with axum's `route_layer`, inside the session layer.
///
/// A request that does not get the lock within the wait answers `503 Service Unavailable`
/// with `Retry-After: 1` and an empty body, without running (see
/// [`Error::LockTimeout`]). A request whose handler outlived the lease finds its save
/// refused ([`Error::LockLost`]): an empty 500, and the next holder's work stays.
///
/// Why a layer and not an extractor: the lock must be taken before the session is read
/// (the layer's autoload, or any extractor, may read it), and given back whatever the
/// handler does; a layer wraps the whole request, and `route_layer` names the routes where
/// the wiring is, as tower does for timeouts and rate limits.
#[derive(Clone, Debug)]
pub struct SessionLockLayer {
    locking: Locking,
}

impl SessionLockLayer {
    pub(crate) fn new() -> Self {
        SessionLockLayer {
            locking: Locking::new(),
        }
    }

    /// Hold a lock for at most `lease` (default 10 s, as Laravel's `block`): longer than the
    /// slowest handler of the routes. A request still running after it loses the lock, and
    /// its save is refused.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.locking = self.locking.with_lease(lease);
        self
    }

    /// Wait at most `wait` for the lock (default 10 s), then answer 503.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.locking = self.locking.with_wait(wait);
        self
    }

    /// The lease and the wait.
    pub fn locking(&self) -> &Locking {
        &self.locking
    }
}

impl<S> Layer<S> for SessionLockLayer {
    type Service = SessionLock<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionLock {
            inner,
            locking: self.locking.clone(),
        }
    }
}

/// The service [`SessionLockLayer`] builds.
#[derive(Clone, Debug)]
pub struct SessionLock<S> {
    inner: S,
    locking: Locking,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionLock<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready runs the request; a clone takes its place.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let locking = self.locking.clone();
        let session = req.extensions().get::<LazySession>().cloned();
        Box::pin(async move {
            let Some(session) = session else {
                tracing::error!(
                    "a locked route has no session: put the session layer around the routes \
                     the lock layer covers; answering 500"
                );
                return Ok(empty(StatusCode::INTERNAL_SERVER_ERROR));
            };
            match adapter::lock(&session, &locking).await {
                Ok(()) => inner.call(req).await,
                Err(Error::LockTimeout { waited }) => {
                    tracing::warn!(
                        ?waited,
                        "other requests of the session held its lock for the whole wait; \
                         answering 503"
                    );
                    let mut response = empty(StatusCode::SERVICE_UNAVAILABLE);
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                    Ok(response)
                }
                Err(error) => {
                    tracing::error!(%error, "taking the session's lock failed; answering 500");
                    Ok(empty(StatusCode::INTERNAL_SERVER_ERROR))
                }
            }
        })
    }
}
