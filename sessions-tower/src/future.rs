use crate::config::Config;
use http::header::{Entry, VARY};
use http::{HeaderValue, Request, Response, StatusCode, header::SET_COOKIE};
use pin_project_lite::pin_project;
use sessions_core::{Commit, Error, SessionContext};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower_service::Service;

/// The largest `Set-Cookie` value sent: browsers keep cookies up to 4096 bytes, and a larger
/// one would be dropped or cut without a word.
pub const MAX_SET_COOKIE_BYTES: usize = 4096;

/// `Cookie`, as a `Vary` value: built at compile time.
const VARY_COOKIE: HeaderValue = HeaderValue::from_static("Cookie");

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// The response future of [`SessionMiddleware`](crate::SessionMiddleware).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        // The handler runs; each poll makes the request's session context current. No
        // context from the start: the request is outside the cookie path, it gets no session,
        // and its polls leave whatever context is current alone.
        Running { #[pin] future: S::Future, context: Option<SessionContext>, config: Arc<Config> },
        // The handler is done; the session is being saved.
        Saving { save: BoxFuture<Result<Commit, Error>>, response: Option<S::Response>, config: Arc<Config> },
        Done,
    }
}

impl<S, ReqBody> std::fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    /// Call `inner` and wrap its future: built in place, so the (often large) inner future
    /// is written once rather than moved through a constructor.
    #[inline(always)]
    pub(crate) fn call(
        inner: &mut S,
        request: Request<ReqBody>,
        context: Option<SessionContext>,
        config: Arc<Config>,
    ) -> Self {
        ResponseFuture {
            state: State::Running {
                future: inner.call(request),
                context,
                config,
            },
        }
    }
}

fn internal_error<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
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

/// Apply a commit to the response: cookie header and `Vary`.
fn finish<B: Default>(mut response: Response<B>, commit: Commit, config: &Config) -> Response<B> {
    let cookie = match &commit {
        Commit::Untouched => return response,
        Commit::Unchanged => None,
        Commit::Set(value) => match config.set_cookie(value) {
            Some(header) if header.len() > MAX_SET_COOKIE_BYTES => {
                let error = Error::CookieTooLarge {
                    size: header.len(),
                    limit: MAX_SET_COOKIE_BYTES,
                };
                tracing::error!(%error, cookie = %config.cookie_name, "session not saved; answering 500");
                return internal_error();
            }
            Some(header) => Some(header),
            None => {
                tracing::error!(
                    cookie = %config.cookie_name,
                    "the session backend returned a value that cannot be sent in a cookie"
                );
                return internal_error();
            }
        },
        Commit::Expire => Some(config.expire_cookie()),
        _ => None,
    };
    let headers = response.headers_mut();
    if let Some(cookie) = cookie {
        headers.append(SET_COOKIE, cookie);
    }
    add_vary_cookie(headers);
    response
}

/// The response once the session is saved: with its cookie, or a 500 when saving failed.
fn saved_response<B: Default>(
    response: Response<B>,
    saved: Result<Commit, Error>,
    config: &Config,
) -> Response<B> {
    match saved {
        Ok(commit) => finish(response, commit, config),
        Err(error) => {
            tracing::error!(%error, "saving the session failed; answering 500");
            internal_error()
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Running {
                    future,
                    context,
                    config,
                } => {
                    if context.is_none() {
                        return future.poll(cx);
                    }
                    let polled = SessionContext::enter(context, || future.poll(cx));
                    let response = match ready!(polled) {
                        Ok(response) => response,
                        Err(error) => return Poll::Ready(Err(error)),
                    };
                    let Some(session) = context.take().and_then(SessionContext::into_session)
                    else {
                        return Poll::Ready(Ok(response));
                    };
                    // Unchanged sessions, and writes to backends that need no waiting, are
                    // finished here without a boxed future.
                    if let Some(saved) = session.commit_now() {
                        return Poll::Ready(Ok(saved_response(response, saved, config)));
                    }
                    let config = Arc::clone(config);
                    this.state.set(State::Saving {
                        save: Box::pin(async move { session.commit().await }),
                        response: Some(response),
                        config,
                    });
                }
                StateProj::Saving {
                    save,
                    response,
                    config,
                } => {
                    let saved = ready!(save.as_mut().poll(cx));
                    let Some(response) = response.take() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(internal_error()));
                    };
                    return Poll::Ready(Ok(saved_response(response, saved, config)));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}
