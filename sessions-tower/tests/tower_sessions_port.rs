//! The behaviours tower-sessions 0.15 checks in its own integration tests (its
//! `tests/common/mod.rs`), checked here through our layer, written against our API.
//!
//! The layer is configured as tower-sessions' test app is: the three settings whose defaults
//! differ (cookie name, `SameSite`, lifetime; see the README's "Coming from tower-sessions")
//! are set to theirs, and `Secure` is set on as their app sets it. The last test shows what
//! a port that forgets those settings sends instead.
//!
//! Where our layer differs from tower-sessions by design, the test says so and asserts ours.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use cookie::Cookie;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, StatusCode};
use sessionkit_memory::InMemoryBackend;
use sessionkit_tower::testing::{TestClient, TestResponse};
use sessionkit_tower::{Error, Lifetime, SameSite, Session, SessionLayer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HOUR: Duration = Duration::from_secs(60 * 60);
const DAY: u64 = 24 * 60 * 60;

/// Our layer with tower-sessions' defaults, as their test app builds it: `max_age` is their
/// `Expiry::OnInactivity` (none: their default, a browser-session cookie), `domain` their
/// `with_domain`.
fn tower_sessions_layer(
    max_age: Option<Duration>,
    domain: Option<&str>,
) -> SessionLayer<InMemoryBackend> {
    let mut builder = SessionLayer::builder(InMemoryBackend::new())
        .with_cookie_name("id") // ours: `session`
        .with_same_site(SameSite::Strict) // ours: Lax
        .with_max_age(Duration::ZERO) // ours: 14 days; zero = a browser-session cookie
        .with_secure(true); // their test app's `with_secure(true)` (our default too)
    if let Some(max_age) = max_age {
        builder = builder.with_max_age(max_age);
    }
    if let Some(domain) = domain {
        builder = builder.with_domain(domain);
    }
    builder.build().expect("a valid configuration")
}

/// The routes of the app under test, one per session operation.
fn routes(layer: SessionLayer<InMemoryBackend>) -> Router {
    async fn hello(_session: Session) -> &'static str {
        "hello"
    }
    async fn insert(session: Session) -> Result<&'static str, Error> {
        session.insert("foo", 42_usize)?;
        Ok("inserted")
    }
    async fn bump(session: Session) -> Result<String, Error> {
        let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
        session.insert("n", n)?;
        Ok(n.to_string())
    }
    async fn read(session: Session) -> Result<String, Error> {
        Ok(format!("{:?}", session.get::<usize>("foo")?))
    }
    async fn remove(session: Session) -> Result<String, Error> {
        Ok(format!("{:?}", session.remove("foo")?))
    }
    async fn cycle_id(session: Session) -> Result<&'static str, Error> {
        session.regenerate_id()?;
        Ok("cycled")
    }
    async fn flush(session: Session) -> Result<&'static str, Error> {
        session.delete().await?;
        Ok("flushed")
    }
    async fn for_two_hours_idle(session: Session) -> Result<&'static str, Error> {
        session.set_lifetime(Some(Lifetime::Inactivity(2 * HOUR)))?;
        Ok("inactivity")
    }
    async fn until_tomorrow(session: Session) -> Result<String, Error> {
        let end = SystemTime::now() + Duration::from_secs(DAY);
        session.set_lifetime(Some(Lifetime::until(end)))?;
        let secs = end
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        Ok(secs.to_string())
    }
    async fn browser_session(session: Session) -> Result<&'static str, Error> {
        session.set_lifetime(Some(Lifetime::BrowserSession))?;
        Ok("browser session")
    }
    async fn layer_lifetime(session: Session) -> Result<&'static str, Error> {
        session.set_lifetime(None)?;
        Ok("layer's lifetime")
    }

    Router::new()
        .route("/", get(hello))
        .route("/plain", get(|| async { "no session taken" }))
        .route("/insert", get(insert))
        .route("/bump", get(bump))
        .route("/get", get(read))
        .route("/remove", get(remove))
        .route("/cycle_id", get(cycle_id))
        .route("/flush", get(flush))
        .route("/expiry/inactivity", get(for_two_hours_idle))
        .route("/expiry/until", get(until_tomorrow))
        .route("/expiry/browser", get(browser_session))
        .route("/expiry/layer", get(layer_lifetime))
        .layer(layer)
}

fn tower_sessions_client(max_age: Option<Duration>, domain: Option<&str>) -> TestClient {
    TestClient::new(routes(tower_sessions_layer(max_age, domain)))
}

/// Every `Set-Cookie` header of the response.
fn set_cookies(res: &TestResponse) -> Vec<&str> {
    res.headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("a Set-Cookie header is text"))
        .collect()
}

/// The response's one `Set-Cookie`, which must be the session cookie `id`, parsed.
fn the_session_cookie(res: &TestResponse) -> Cookie<'static> {
    let all = set_cookies(res);
    assert_eq!(all.len(), 1, "one Set-Cookie expected, got {all:?}");
    let cookie = Cookie::parse(all[0].to_owned()).expect("a well-formed Set-Cookie");
    assert_eq!(cookie.name(), "id", "{}", all[0]);
    cookie
}

fn max_age_secs(cookie: &Cookie<'_>) -> Option<i64> {
    cookie.max_age().map(|age| age.whole_seconds())
}

/// A cookie that keeps the session until the browser closes: no `Max-Age`, no `Expires`.
fn assert_browser_session(cookie: &Cookie<'_>) {
    assert_eq!(cookie.max_age(), None, "{cookie}");
    assert_eq!(cookie.expires(), None, "{cookie}");
}

/// A cookie that removes `id` from the browser, on the path (and domain) it was set for.
fn assert_expires_the_cookie(cookie: &Cookie<'_>, domain: Option<&str>) {
    assert_eq!(cookie.value(), "", "{cookie}");
    assert_eq!(max_age_secs(cookie), Some(0), "{cookie}");
    assert_eq!(cookie.path(), Some("/"), "{cookie}");
    assert_eq!(cookie.domain(), domain, "{cookie}");
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    i64::try_from(secs).expect("in range")
}

/// tower-sessions: `no_session_set`.
#[tokio::test]
async fn no_session_is_set_when_the_handler_writes_nothing() {
    let client = tower_sessions_client(Some(HOUR), None);

    let res = client.get("/").await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "hello"));
    assert_eq!(set_cookies(&res), Vec::<&str>::new());

    let res = client.get("/plain").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(set_cookies(&res), Vec::<&str>::new());

    // Reading a session that exists, without changing it, does not send the cookie again
    // either (tower-sessions saves only a modified session too, by default).
    client.get("/insert").await;
    let held = client.cookie("id").expect("the insert set the cookie");
    let res = client.get("/get").await;
    assert_eq!(res.body, "Some(42)");
    assert_eq!(set_cookies(&res), Vec::<&str>::new());
    assert_eq!(client.cookie("id").as_deref(), Some(held.as_str()));
}

/// tower-sessions: `bogus_session_cookie`. A value shaped like an id (theirs, 22 characters;
/// ours, 32) that names no stored session is never adopted: the write gets a fresh id.
#[tokio::test]
async fn a_bogus_session_cookie_gives_a_fresh_session() {
    for bogus in ["AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let client = tower_sessions_client(Some(HOUR), None);
        client.set_cookie("id", Some(bogus));

        let res = client.get("/insert").await;
        assert_eq!(res.status, StatusCode::OK, "{bogus}");
        let cookie = the_session_cookie(&res);
        assert_ne!(cookie.value(), bogus);
        assert!(!cookie.value().is_empty());
        assert_eq!(max_age_secs(&cookie), Some(3600));

        // The fresh session is the one that holds the value; the bogus id still opens nothing.
        assert_eq!(client.get("/get").await.body, "Some(42)");
        client.set_cookie("id", Some(bogus));
        assert_eq!(client.get("/get").await.body, "None");
    }
}

/// tower-sessions: `malformed_session_cookie`. Whatever the client sends as `id`, the handler
/// gets an empty session and the request succeeds; a handler that writes nothing answers by
/// expiring the unusable cookie (tower-sessions removes it too: a `Set-Cookie` with an empty
/// value).
#[tokio::test]
async fn a_malformed_session_cookie_gives_a_fresh_session() {
    let too_long = "x".repeat(5000);
    for malformed in [
        "malformed",
        "\"quoted\"",
        "%00%ff",
        "a.b.c",
        too_long.as_str(),
    ] {
        let client = tower_sessions_client(Some(HOUR), None);
        client.set_cookie("id", Some(malformed));
        let res = client.get("/").await;
        assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "hello"));
        assert_expires_the_cookie(&the_session_cookie(&res), None);
        assert_eq!(client.cookie("id"), None, "the browser dropped it");

        client.set_cookie("id", Some(malformed));
        let res = client.get("/get").await;
        assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "None"));

        client.set_cookie("id", Some(malformed));
        let res = client.get("/insert").await;
        assert_eq!(res.status, StatusCode::OK);
        let fresh = the_session_cookie(&res);
        assert!(!fresh.value().is_empty() && fresh.value() != malformed);
        assert_eq!(client.get("/get").await.body, "Some(42)");
    }

    // Bytes that are not UTF-8 cannot be planted through the client's jar: sent by hand.
    let client = tower_sessions_client(Some(HOUR), None);
    let mut req = Request::get("/get").body(Body::empty()).unwrap();
    req.headers_mut()
        .insert(COOKIE, HeaderValue::from_bytes(b"id=\xff\xfe\x80").unwrap());
    let res = client.request(req).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "None"));
    assert_expires_the_cookie(&the_session_cookie(&res), None);
}

/// tower-sessions: `session_max_age` (their default expiry: none).
#[tokio::test]
async fn inserting_sets_a_browser_session_cookie_named_id() {
    let client = tower_sessions_client(None, None);
    let res = client.get("/insert").await;
    assert_eq!(res.status, StatusCode::OK);
    let cookie = the_session_cookie(&res);

    assert_eq!(cookie.name(), "id");
    assert!(!cookie.value().is_empty());
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);
    assert_browser_session(&cookie);
    assert_eq!(client.cookie("id").as_deref(), Some(cookie.value()));
}

/// tower-sessions: `insert_session` (with `Expiry::OnInactivity(1 hour)`, which maps to our
/// `with_max_age`).
#[tokio::test]
async fn a_configured_max_age_shows_in_the_cookie() {
    let client = tower_sessions_client(Some(HOUR), None);
    let res = client.get("/insert").await;
    assert_eq!(res.status, StatusCode::OK);
    let cookie = the_session_cookie(&res);

    assert_eq!(max_age_secs(&cookie), Some(3600));
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.path(), Some("/"));

    // Renewed by each save: a later write sends the full hour again.
    let res = client.get("/bump").await;
    assert_eq!(max_age_secs(&the_session_cookie(&res)), Some(3600));
}

/// tower-sessions: `get_session`.
#[tokio::test]
async fn a_value_inserted_is_read_back_on_the_next_request() {
    let app = routes(tower_sessions_layer(Some(HOUR), None));
    let client = TestClient::new(app.clone());
    client.get("/insert").await;
    let res = client.get("/get").await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (StatusCode::OK, "Some(42)")
    );

    // It is the cookie that carries the session: another client of the app does not see it.
    let stranger = TestClient::new(app);
    assert_eq!(stranger.get("/get").await.body, "None");
}

/// tower-sessions: `get_no_value`.
#[tokio::test]
async fn getting_a_missing_value_gives_none() {
    let client = tower_sessions_client(Some(HOUR), None);
    let res = client.get("/get").await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "None"));
    assert_eq!(set_cookies(&res), Vec::<&str>::new());

    // In a session that holds other values.
    client.get("/bump").await;
    let res = client.get("/get").await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "None"));
}

/// tower-sessions: `remove_last_value`. By design our layer differs: a session emptied of its
/// last value ends (the backend keeps only an end marker under its id, for `ENDED_GRACE`) and
/// its cookie is expired; tower-sessions keeps an empty record under the same id and sends the
/// cookie again. Either way the value reads `None`.
#[tokio::test]
async fn removing_the_last_value_expires_the_cookie_and_ends_the_session() {
    let client = tower_sessions_client(Some(HOUR), None);
    client.get("/insert").await;
    let old = client.cookie("id").expect("the insert set the cookie");

    let res = client.get("/remove").await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (StatusCode::OK, "Some(Number(42))")
    );
    assert_expires_the_cookie(&the_session_cookie(&res), None);
    assert_eq!(client.cookie("id"), None);

    let res = client.get("/get").await;
    assert_eq!(res.body, "None");
    assert_eq!(set_cookies(&res), Vec::<&str>::new());

    // The old value opens nothing: the session ended. Sent again within the grace (as by a
    // request that overlapped the one that emptied it), its cookie is left to that request's
    // answer, which expired it: no Set-Cookie.
    client.set_cookie("id", Some(&old));
    let res = client.get("/get").await;
    assert_eq!(res.body, "None");
    assert_eq!(set_cookies(&res), Vec::<&str>::new());
}

/// tower-sessions: `cycle_session_id`.
#[tokio::test]
async fn cycling_the_id_keeps_the_data_under_a_new_cookie_value() {
    let client = tower_sessions_client(Some(HOUR), None);
    client.get("/insert").await;
    let first = client.cookie("id").expect("the insert set the cookie");

    let res = client.get("/cycle_id").await;
    assert_eq!(res.status, StatusCode::OK);
    let second = the_session_cookie(&res);
    assert_ne!(second.value(), first);
    assert!(!second.value().is_empty());
    assert_eq!(max_age_secs(&second), Some(3600));
    assert_eq!(second.same_site(), Some(SameSite::Strict));

    let res = client.get("/get").await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (StatusCode::OK, "Some(42)")
    );

    // The old value opens nothing.
    let old = client.clone();
    old.set_cookie("id", Some(&first));
    assert_eq!(old.get("/get").await.body, "None");
    // ... and the new one still opens the data.
    assert_eq!(client.get("/get").await.body, "Some(42)");
}

/// tower-sessions: `flush_session`.
#[tokio::test]
async fn flushing_expires_the_cookie_and_the_old_value_opens_nothing() {
    let client = tower_sessions_client(Some(HOUR), None);
    client.get("/insert").await;
    let old = client.cookie("id").expect("the insert set the cookie");

    let res = client.get("/flush").await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "flushed"));
    assert_expires_the_cookie(&the_session_cookie(&res), None);
    assert_eq!(client.cookie("id"), None);

    client.set_cookie("id", Some(&old));
    assert_eq!(client.get("/get").await.body, "None");
}

/// tower-sessions: `flush_with_domain`.
#[tokio::test]
async fn flushing_with_a_domain_expires_the_cookie_on_that_domain() {
    let client = tower_sessions_client(Some(HOUR), Some("localhost"));
    let res = client.get("/insert").await;
    let set = the_session_cookie(&res);
    assert_eq!(set.domain(), Some("localhost"));
    assert_eq!(set.path(), Some("/"));

    let res = client.get("/flush").await;
    assert_eq!(res.status, StatusCode::OK);
    let removal = the_session_cookie(&res);
    assert_expires_the_cookie(&removal, Some("localhost"));
    assert_eq!(client.cookie("id"), None);
}

/// tower-sessions: `set_expiry` (`Expiry::AtDateTime(now + 1 day)` on a layer whose expiry is
/// an hour), with the other two kinds of expiry besides. The lifetime is this session's own:
/// another session of the same layer keeps the layer's hour.
#[tokio::test]
async fn setting_an_expiry_on_one_session_sets_its_max_age() {
    let app = routes(tower_sessions_layer(Some(HOUR), Some("localhost")));
    let client = TestClient::new(app.clone());
    let res = client.get("/insert").await;
    assert_eq!(max_age_secs(&the_session_cookie(&res)), Some(3600));

    // Until(t): a Max-Age that counts down to t.
    let res = client.get("/expiry/until").await;
    assert_eq!(res.status, StatusCode::OK);
    let until: i64 = res.body.parse().expect("the handler answers the end time");
    let cookie = the_session_cookie(&res);
    let age = max_age_secs(&cookie).expect("Until gives a Max-Age");
    let left = until - unix_now();
    assert!(
        (left - 1..=left + 1).contains(&age) && (DAY as i64 - 2..=DAY as i64).contains(&age),
        "Max-Age {age}, {left}s to the end"
    );
    assert_eq!(cookie.domain(), Some("localhost"));
    // A second later, the next save sends less: the end stays where it was.
    std::thread::sleep(Duration::from_millis(1100));
    let res = client.get("/bump").await;
    let later = max_age_secs(&the_session_cookie(&res)).expect("still an own lifetime");
    assert!(
        later < age,
        "Max-Age {later} after {age}: it should count down"
    );

    // Inactivity(d): a Max-Age of d, renewed by each save.
    let res = client.get("/expiry/inactivity").await;
    assert_eq!(max_age_secs(&the_session_cookie(&res)), Some(7200));
    let res = client.get("/bump").await;
    assert_eq!(max_age_secs(&the_session_cookie(&res)), Some(7200));

    // BrowserSession: no Max-Age.
    let res = client.get("/expiry/browser").await;
    assert_browser_session(&the_session_cookie(&res));
    let res = client.get("/bump").await;
    assert_browser_session(&the_session_cookie(&res));

    // The data survived every change of lifetime.
    assert_eq!(client.get("/get").await.body, "Some(42)");

    // Another session of the same app keeps the layer's hour.
    let other = TestClient::new(app);
    let res = other.get("/insert").await;
    assert_eq!(max_age_secs(&the_session_cookie(&res)), Some(3600));
}

/// tower-sessions: `change_expiry_type`: from a browser-session cookie to an end time, and
/// from a max age to a browser-session cookie, each across requests; and (ours only) back to
/// the layer's lifetime with `set_lifetime(None)`.
#[tokio::test]
async fn changing_the_expiry_type_between_requests() {
    // No expiry configured (theirs `OnSessionEnd`, ours `with_max_age(ZERO)`) -> Until.
    let client = tower_sessions_client(None, Some("localhost"));
    let res = client.get("/insert").await;
    assert_browser_session(&the_session_cookie(&res));

    let res = client.get("/expiry/until").await;
    let age = max_age_secs(&the_session_cookie(&res)).expect("Until gives a Max-Age");
    assert!(
        (DAY as i64 - 2..=DAY as i64).contains(&age),
        "Max-Age {age}"
    );
    let res = client.get("/expiry/layer").await;
    assert_browser_session(&the_session_cookie(&res));

    // An hour configured -> BrowserSession.
    let client = tower_sessions_client(Some(HOUR), Some("localhost"));
    let res = client.get("/insert").await;
    assert_eq!(max_age_secs(&the_session_cookie(&res)), Some(3600));

    let res = client.get("/expiry/browser").await;
    assert_browser_session(&the_session_cookie(&res));
    // Kept with the session: a later save still sends a browser-session cookie.
    let res = client.get("/bump").await;
    assert_browser_session(&the_session_cookie(&res));

    let res = client.get("/expiry/layer").await;
    assert_eq!(max_age_secs(&the_session_cookie(&res)), Some(3600));
    assert_eq!(client.get("/get").await.body, "Some(42)");
}

/// What the README's tower-sessions guide warns about: without the three settings, a port
/// changes the cookie without a word.
#[tokio::test]
async fn without_the_three_settings_the_cookie_differs_from_tower_sessions() {
    let client = TestClient::new(routes(SessionLayer::new(InMemoryBackend::new())));
    let res = client.get("/insert").await;
    assert_eq!(res.status, StatusCode::OK);

    assert_eq!(res.set_cookie("id"), None, "not named `id`");
    let all = set_cookies(&res);
    assert_eq!(all.len(), 1, "{all:?}");
    let cookie = Cookie::parse(all[0].to_owned()).unwrap();
    assert_eq!(cookie.name(), "session");
    assert_eq!(cookie.same_site(), Some(SameSite::Lax));
    assert_eq!(max_age_secs(&cookie), Some(1_209_600), "14 days");
    // The rest is the same in both.
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.path(), Some("/"));

    // And an `id` cookie from the tower-sessions deployment is not read at all.
    let ported = TestClient::new(routes(SessionLayer::new(InMemoryBackend::new())));
    ported.set_cookie("id", Some("from-the-old-deployment"));
    let res = ported.get("/get").await;
    assert_eq!(res.body, "None");
    assert_eq!(set_cookies(&res), Vec::<&str>::new());
}
