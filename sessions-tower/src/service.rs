use crate::SessionLayer;
use crate::future::ResponseFuture;
use http::{Request, Response};
use sessionkit_core::{Session, SessionBackend};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The service [`SessionLayer`] builds: puts each request's [`Session`] into the request's
/// extensions and saves it on the way out.
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
    B: SessionBackend,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let layer = &*self.layer;
        let config = &layer.config;
        // Outside the cookie path there is no session at all: no cookie read, set or removed.
        let path = client_path(&req);
        let (covered, autoload) = (config.covers(path), config.autoloads(path));
        let session = covered.then(|| {
            // A value the backend could never have issued reaches no backend call: when no
            // cookie of the name is usable it stands as an empty value, which loads as a fresh
            // session and gets the cookie expired.
            let cookie =
                crate::cookie::request_value(req.headers(), &config.cookie_name, |value| {
                    layer.backend.accepts(value)
                });
            let backend = Arc::clone(&layer.sessions);
            let mut policy = config.policy;
            policy.autoload = autoload;
            let session = Session::with_policy(backend, cookie, policy);
            req.extensions_mut().insert(session.clone());
            session
        });
        ResponseFuture::new(self.inner.call(req), session, Arc::clone(config))
    }
}
