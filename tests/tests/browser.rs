//! The main example (`examples/app`) in a real browser: headless Chromium driven over
//! WebDriver by `chromedriver`, through `fantoccini`.
//!
//! It needs Debian's `chromium` and `chromium-driver` packages (`./scripts/test` installs
//! them); without them it fails and says how to get them. `CHROMEDRIVER` and `CHROMIUM` name
//! other binaries. Screenshots and chromedriver's log go to `target/browser-artifacts/`.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use sessionkit_app::Config;
// fantoccini hands cookies over as `cookie` 0.18 cookies, the crate the layer re-exports from.
use sessionkit_tower::SameSite;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "The browser test drives headless Chromium through chromedriver: \
     install Debian's packages with `apt-get install chromium chromium-driver` (./scripts/test \
     does this when run as root), or point CHROMEDRIVER and CHROMIUM at the binaries";

/// The whole scenario's limit, so a browser that hangs fails the test instead of CI.
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);

/// `name` as given when it is a path, else the first match on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn program(variable: &str, names: &[&str]) -> PathBuf {
    let names: Vec<String> = match std::env::var(variable) {
        Ok(value) if !value.is_empty() => vec![value],
        _ => names.iter().map(|n| n.to_string()).collect(),
    };
    names
        .iter()
        .find_map(|name| find_program(name))
        .unwrap_or_else(|| panic!("{} not found. {INSTALL_HINT}", names.join(" or ")))
}

/// `target/browser-artifacts/`.
fn artifacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("browser-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/browser-artifacts");
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A `chromedriver --port=<free port>` child process, killed when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    fn start(binary: &Path, log: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}. {INSTALL_HINT}", binary.display()));
        let mut driver = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&driver.addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!(
                    "chromedriver exited at start ({status}); its log: {}",
                    log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {} within 20 s",
                driver.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser run: a WebDriver session, which is one Chromium process. Ended with
/// [`Browser::close`]; if a failed check unwinds past it, dropping it ends the session with a
/// plain `DELETE /session/<id>` so no Chromium is left running.
struct Browser {
    client: Option<Client>,
    session: String,
    driver: SocketAddr,
}

impl Browser {
    async fn open(driver: &Driver, chromium: &Path, profile: &Path) -> Browser {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=900,700",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        // chromedriver speaks plain HTTP on loopback: no TLS connector needed.
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        // The previous run's Chromium may still be letting go of the profile: retry a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match builder.connect(&driver.url()).await {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("browser: starting Chromium failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("Chromium did not start through chromedriver: {e}"),
            }
        };
        let session = client
            .session_id()
            .await
            .expect("the WebDriver session id")
            .expect("a WebDriver session");
        Browser {
            client: Some(client),
            session,
            driver: driver.addr,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open browser")
    }

    /// Quit the browser the way a user closes it: the WebDriver session ends and Chromium
    /// exits, writing its profile (persistent cookies included) to disk.
    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.expect("end the WebDriver session");
        }
    }

    async fn visits(&self) -> String {
        self.text(Locator::Id("visits")).await
    }

    async fn text(&self, locator: Locator<'_>) -> String {
        self.client()
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(locator)
            .await
            .unwrap_or_else(|e| panic!("no {locator:?} on the page: {e}"))
            .text()
            .await
            .expect("the element's text")
    }

    async fn has(&self, locator: Locator<'_>) -> bool {
        self.client().find(locator).await.is_ok()
    }

    async fn log_in(&self, name: &str) {
        self.log_in_with(name, false).await;
    }

    /// Log in, ticking "Remember me" when `remember`.
    async fn log_in_with(&self, name: &str, remember: bool) {
        let client = self.client();
        let field = client
            .find(Locator::Id("name"))
            .await
            .expect("the login form's name field");
        field.send_keys(name).await.expect("type the name");
        if remember {
            client
                .find(Locator::Id("remember"))
                .await
                .expect("the remember-me checkbox")
                .click()
                .await
                .expect("tick remember me");
        }
        client
            .find(Locator::Id("login"))
            .await
            .expect("the login button")
            .click()
            .await
            .expect("submit the login form");
        assert_eq!(self.text(Locator::Id("user")).await, name);
    }

    async fn log_out(&self) {
        self.client()
            .find(Locator::Id("logout"))
            .await
            .expect("the logout button")
            .click()
            .await
            .expect("submit the logout form");
        self.text(Locator::Id("anonymous")).await;
    }

    async fn screenshot(&self, path: &Path) {
        let png = self.client().screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png).expect("write the screenshot");
        eprintln!("browser: screenshot in {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.client.is_none() {
            return;
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&self.driver, Duration::from_secs(2)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.session, self.driver
            );
            let _ = stream.read(&mut [0; 512]);
        }
    }
}

/// The main example as `cargo run -p sessionkit-app` builds it for these settings, served on a
/// free loopback port in this process.
async fn serve_app(env: &[(&str, &str)]) -> (String, tokio::task::JoinHandle<()>) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::parse(std::iter::empty(), |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .expect("valid settings")
    .expect("settings, not help");
    let app = sessionkit_app::build(&config).await.expect("the app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!("http://{}/", listener.local_addr().expect("its address"));
    let server = tokio::spawn(async move {
        axum::serve(listener, app.router)
            .await
            .expect("the app's server failed");
    });
    (url, server)
}

const SECRET: &str = "a browser-test secret that is long enough to sign with";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_example_works_in_a_real_browser() {
    let chromedriver = program("CHROMEDRIVER", &["chromedriver"]);
    let chromium = program("CHROMIUM", &["chromium", "chromium-browser"]);
    let artifacts = artifacts_dir();
    // Declared before the driver, so it is removed after chromedriver (and its Chromium) ends,
    // whether the test passes or not.
    let profile = Profile::fresh();
    let driver = Driver::start(&chromedriver, &artifacts.join("chromedriver.log"));

    let scenario = scenario(&driver, &chromium, &profile.0, &artifacts);
    tokio::time::timeout(SCENARIO_LIMIT, scenario)
        .await
        .unwrap_or_else(|_| panic!("the browser scenario took over {SCENARIO_LIMIT:?}"));
}

/// A fresh Chromium profile directory (`--user-data-dir`) under Cargo's scratch space for
/// tests, removed when dropped.
struct Profile(PathBuf);

impl Profile {
    fn fresh() -> Profile {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("browser-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Profile(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn scenario(driver: &Driver, chromium: &Path, profile: &Path, artifacts: &Path) {
    // Cookie sessions, as by default.
    let (app, _server) = serve_app(&[("SESSION_SECRET", SECRET)]).await;

    let browser = Browser::open(driver, chromium, profile).await;
    let client = browser.client();

    // The counter: 1 on the first visit, 2 on a reload.
    client.goto(&app).await.expect("open the app");
    assert_eq!(browser.visits().await, "1", "first visit");
    assert!(browser.has(Locator::Id("anonymous")).await);
    client.refresh().await.expect("reload");
    assert_eq!(browser.visits().await, "2", "after a reload");

    // Logging in shows the name, and the session (its count) carries over the new id.
    browser.log_in("Ada Lovelace").await;
    assert_eq!(browser.visits().await, "3", "after logging in");

    // The cookie as the browser keeps it.
    let cookie = client
        .get_named_cookie("session")
        .await
        .expect("the browser holds the session cookie");
    assert_eq!(cookie.http_only(), Some(true), "HttpOnly: {cookie:?}");
    assert_eq!(
        cookie.same_site(),
        Some(SameSite::Lax),
        "SameSite: {cookie:?}"
    );
    assert_eq!(cookie.path(), Some("/"), "Path: {cookie:?}");
    assert_ne!(
        cookie.secure(),
        Some(true),
        "Secure on plain HTTP: {cookie:?}"
    );
    assert_eq!(
        cookie.expires(),
        None,
        "a login without \"Remember me\" must give a browser-session cookie: {cookie:?}"
    );
    // HttpOnly, seen from the page: its scripts cannot read the cookie.
    let visible = client
        .execute("return document.cookie", vec![])
        .await
        .expect("run a script in the page");
    assert_eq!(visible, json!(""), "page scripts can read the cookie");

    browser
        .screenshot(&artifacts.join("app-logged-in.png"))
        .await;

    // Logging out forgets the session: no name, and the count starts again.
    browser.log_out().await;
    assert!(
        !browser.has(Locator::Id("user")).await,
        "the name survived the logout"
    );
    assert_eq!(browser.visits().await, "1", "the count survived the logout");

    // Log in again without "Remember me", then close the browser and open it again on the
    // same profile: the browser-session cookie is gone, and so is the login.
    browser.log_in("Grace Hopper").await;
    browser.close().await;
    let browser = Browser::open(driver, chromium, profile).await;
    let client = browser.client();
    client.goto(&app).await.expect("open the app again");
    assert!(
        browser.has(Locator::Id("anonymous")).await,
        "a browser-session cookie outlived the browser"
    );
    assert_eq!(
        browser.visits().await,
        "1",
        "the session outlived the browser"
    );
    browser
        .screenshot(&artifacts.join("app-after-restart.png"))
        .await;

    // With "Remember me" the cookie lasts (30 days), and the same restart keeps the login: so
    // what forgot the session above was the browser-session cookie, not a lost profile.
    browser.log_in_with("Ada Lovelace", true).await;
    let remembered = browser
        .client()
        .get_named_cookie("session")
        .await
        .expect("the browser holds the session cookie");
    assert!(
        remembered.expires().is_some(),
        "\"Remember me\" must give a lasting cookie: {remembered:?}"
    );
    browser.close().await;
    let browser = Browser::open(driver, chromium, profile).await;
    browser
        .client()
        .goto(&app)
        .await
        .expect("open the app again");
    assert_eq!(
        browser.text(Locator::Id("user")).await,
        "Ada Lovelace",
        "a remembered login did not survive the restart"
    );
    assert_eq!(browser.visits().await, "3");
    browser
        .screenshot(&artifacts.join("app-remembered-after-restart.png"))
        .await;
    browser.close().await;
}
