use crate::SessionLayer;
use crate::future::ResponseFuture;
use http::{Request, Response};
use sessions_core::{SessionBackend, SessionContext};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The service [`SessionLayer`] builds: gives each request a session and saves it on the way
/// out.
pub struct SessionMiddleware<S, B> {
    pub(crate) inner: S,
    /// One reference count to take when the service is cloned (axum clones it for every
    /// request under `Router::layer`).
    pub(crate) layer: Arc<SessionLayer<B>>,
}

impl<S: Clone, B> Clone for SessionMiddleware<S, B> {
    fn clone(&self) -> Self {
        SessionMiddleware {
            inner: self.inner.clone(),
            layer: Arc::clone(&self.layer),
        }
    }
}

impl<S: std::fmt::Debug, B> std::fmt::Debug for SessionMiddleware<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionMiddleware")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, B> SessionMiddleware<S, B> {
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

impl<S, B, ReqBody, ResBody> Service<Request<ReqBody>> for SessionMiddleware<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    B: SessionBackend,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let layer = &*self.layer;
        let config = &layer.config;
        // Outside the cookie path there is no session at all: no context. One construction
        // of the future either way, so the inner future is written in place once.
        let context = config.covers(req.uri().path()).then(|| {
            // A value the backend could never have issued reaches no backend call: it stands
            // as an empty value, which loads as a fresh session and gets the cookie expired.
            let cookie = config.cookie_value(req.headers()).map(|value| {
                if layer.backend.accepts(value) {
                    Arc::<str>::from(value)
                } else {
                    Arc::<str>::from("")
                }
            });
            SessionContext::new(Arc::clone(&layer.settings), cookie)
        });
        ResponseFuture::call(&mut self.inner, req, context, Arc::clone(config))
    }
}
