use http::{Request, Response, StatusCode};
use sessionkit_core::Session;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Loads the request's session before the service it wraps runs: autoload for chosen routes,
/// the axum way (`Router::route_layer(LoadSessionLayer)` under a [`SessionLayer`]), so
/// handlers of those routes take `Session` without calling `load()`. Requests without a
/// session (no layer, outside the cookie path) pass through untouched; a failed load answers
/// an empty 500 and logs a `tracing` error.
///
/// ```
/// use axum::{Router, routing::get};
/// use sessionkit_memory::InMemoryBackend;
/// use sessionkit_tower::{Error, LoadSessionLayer, Session, SessionLayer};
///
/// async fn account(session: Session) -> Result<String, Error> {
///     Ok(session.get::<String>("user")?.unwrap_or_default()) // loaded already
/// }
///
/// let app: Router = Router::new()
///     .route("/account", get(account))
///     .route_layer(LoadSessionLayer)
///     .route("/", get(|| async { "home" })) // not loaded here
///     .layer(SessionLayer::new(InMemoryBackend::new()));
/// ```
///
/// [`SessionLayer`]: crate::SessionLayer
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadSessionLayer;

impl<S> Layer<S> for LoadSessionLayer {
    type Service = LoadSession<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadSession { inner }
    }
}

/// The service [`LoadSessionLayer`] builds.
#[derive(Clone, Debug)]
pub struct LoadSession<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LoadSession<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let session = request.extensions().get::<Session>().cloned();
        // The service that was made ready is the one that runs (tower's clone-and-swap).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            if let Some(session) = session {
                if let Err(error) = session.load().await {
                    tracing::error!(%error, "loading the session failed; answering 500");
                    let mut response = Response::new(ResBody::default());
                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    return Ok(response);
                }
            }
            inner.call(request).await
        })
    }
}
