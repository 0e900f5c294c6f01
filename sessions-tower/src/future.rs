use crate::config::Config;
use http::header::{Entry, VARY};
use http::{HeaderValue, Response, StatusCode, header::SET_COOKIE};
use pin_project_lite::pin_project;
use sessionkit_core::{Commit, Error, Session};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// The largest `Set-Cookie` value sent: browsers keep cookies up to 4096 bytes, and a larger
/// one would be dropped or cut without a word.
pub const MAX_SET_COOKIE_BYTES: usize = 4096;

/// `Cookie`, as a `Vary` value: built at compile time.
const VARY_COOKIE: HeaderValue = HeaderValue::from_static("Cookie");

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a save answered, and the cookie's `Max-Age` when the session has its own lifetime.
type Saved = (Result<Commit, Error>, Option<Option<std::time::Duration>>);

pin_project! {
    /// The response future of [`SessionMiddleware`](crate::SessionMiddleware): the inner
    /// service's future, then the save of the request's session.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        // The handler runs. No session when the request is outside the cookie path.
        Running { #[pin] future: F, session: Pending, config: Arc<Config> },
        // The handler is done; the session is being saved.
        Saving { save: BoxFuture<Saved>, response: Option<Response<B>>, config: Arc<Config> },
        Done,
    }
}

/// The request's session while the handler runs. If the request is dropped before the
/// handler answers (the client went away), the session is discarded, so a clone still held
/// somewhere gets [`Error::Committed`] on its next change instead of losing it silently.
struct Pending(Option<Session>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.discard();
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, session: Option<Session>, config: Arc<Config>) -> Self {
        ResponseFuture {
            state: State::Running {
                future,
                session: Pending(session),
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

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Running {
                    future,
                    session,
                    config,
                } => {
                    // An error from the inner service drops `session`, discarding it.
                    let response = ready!(future.poll(cx))?;
                    let Some(session) = session.0.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    if response.status().is_server_error() {
                        // A server error (a handler that failed, or panicked under
                        // `CatchPanic`) may have left its changes half made: none of them is
                        // saved.
                        session.discard();
                        return Poll::Ready(Ok(response));
                    }
                    // Nothing to save (or the handler committed the session itself): no
                    // future.
                    if let Some(commit) = session.commit_without_backend() {
                        return Poll::Ready(Ok(finish(response, commit, config)));
                    }
                    let config = Arc::clone(config);
                    this.state.set(State::Saving {
                        save: Box::pin(async move {
                            let committed = session.commit().await;
                            (committed, session.cookie_max_age())
                        }),
                        response: Some(response),
                        config,
                    });
                }
                StateProj::Saving {
                    save,
                    response,
                    config,
                } => {
                    let (saved, max_age) = ready!(save.as_mut().poll(cx));
                    let response = response.take();
                    let config = Arc::clone(config);
                    this.state.set(State::Done);
                    let Some(response) = response else {
                        return Poll::Ready(Ok(internal_error()));
                    };
                    // A session with a lifetime of its own sets its own `Max-Age`.
                    let config = match max_age {
                        Some(max_age) => Arc::new(config.with_max_age(max_age)),
                        None => config,
                    };
                    return Poll::Ready(Ok(saved_response(response, saved, &config)));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}
