//! A Baton server on a fresh SQLite database, seeded with people, a queue
//! and records, and real headless Chromium browsers driven over
//! ChromeDriver (WebDriver): one browser per person, so each has its own
//! cookies, like two people on two laptops.
//!
//! Without `/usr/bin/chromedriver` (Debian's `chromium-driver`) the tests
//! say so loudly and pass, unless `BATON_REQUIRE_BROWSER=1` (set by
//! `.ci/run`, which installs it), where a missing browser fails them.
//! A failing test leaves a screenshot of every browser it opened under
//! `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::{
    CollectionName, Engine, Kind, LockPolicy, NewItem, Precondition, Principal, QueueName,
    RecordKey, RecordWrite, Role, WriteOp,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// The password of every seeded person.
pub const PASSWORD: &str = "correct horse battery";
/// The desk's lease in these tests: short, so expiry is quick to see.
pub const DESK_LEASE: u32 = 4;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Browser tests run one at a time: each drives several Chromium
/// processes, and two cores cannot run more without timeouts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A running server, its engine (to arrange and check state directly), and
/// the browsers opened on it.
pub struct App {
    pub url: String,
    pub engine: Engine,
    pub admin: Principal,
    pub app: Principal,
    shutdown: CancellationToken,
    driver: Child,
    driver_url: String,
    browsers: Mutex<Vec<(String, Client)>>,
    _dir: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl App {
    /// Starts everything, or `None` (announced) when there is no browser
    /// on this machine and `BATON_REQUIRE_BROWSER` is not set.
    pub async fn start() -> Option<Arc<App>> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            if std::env::var("BATON_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!(
                    "BATON_REQUIRE_BROWSER=1 but {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
                );
            }
            eprintln!(
                "\n*** SKIPPED: browser test, {CHROMEDRIVER} not found (apt-get install -y chromium chromium-driver) ***\n"
            );
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}", dir.path().join("baton.db").display());
        let engine = Engine::open(&db).await.expect("open engine");
        engine.ensure_admin().await.expect("admin");
        let admin = engine.store().principal("admin").await.unwrap().unwrap();
        for (name, role) in [
            ("joe", Role::Operator),
            ("fred", Role::Operator),
            ("sam", Role::Supervisor),
        ] {
            engine.create_principal(&admin, name, role).await.unwrap();
            engine.set_password(&admin, name, PASSWORD).await.unwrap();
        }
        engine
            .set_password(&admin, "admin", PASSWORD)
            .await
            .unwrap();
        let (app, _) = engine
            .create_principal(&admin, "crm", Role::App)
            .await
            .unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let settings = baton_http::HttpSettings {
            desk_lease_seconds: DESK_LEASE,
            ..Default::default()
        };
        tokio::spawn(baton_http::serve(
            listener,
            engine.clone(),
            settings,
            shutdown.clone(),
        ));

        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Arc::new(App {
            url,
            engine,
            admin,
            app,
            shutdown,
            driver,
            driver_url,
            browsers: Mutex::new(Vec::new()),
            _dir: dir,
            _turn: turn,
        }))
    }

    /// A new browser (its own profile, so its own cookies), named for the
    /// screenshots.
    pub async fn browser(&self, name: &str) -> Client {
        let profile = self._dir.path().join(format!("chrome-{name}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", format!("--user-data-dir={}", profile.display())],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.driver_url)
            .await
            .expect("open a Chromium session");
        self.browsers
            .lock()
            .await
            .push((name.to_owned(), client.clone()));
        client
    }

    /// A browser logged in as `name`.
    pub async fn logged_in(&self, name: &str) -> Client {
        let c = self.browser(name).await;
        login(&c, &self.url, name).await;
        c
    }

    /// Runs a test body; on failure, saves a screenshot of every browser
    /// and fails with the error.
    pub async fn check<F, Fut>(self: &Arc<Self>, test: &str, body: F)
    where
        F: FnOnce(Arc<App>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let outcome = body(self.clone()).await;
        if let Err(e) = outcome {
            let dir = screenshot_dir();
            for (name, c) in self.browsers.lock().await.iter() {
                if let Ok(png) = c.screenshot().await {
                    let path = dir.join(format!("{test}-{name}.png"));
                    let _ = std::fs::write(&path, png);
                    eprintln!("screenshot: {}", path.display());
                }
            }
            panic!("{test}: {e:#}");
        }
    }

    /// Puts requests into `queue` as the app.
    pub async fn enqueue(&self, queue: &str, n: usize) -> Vec<i64> {
        let q = QueueName::new(queue).unwrap();
        let mut ids = Vec::new();
        for i in 0..n {
            let item = NewItem::new(
                q.clone(),
                Kind::new("refund").unwrap(),
                json!({"customer": {"id": format!("C-{i}"), "name": format!("Customer {i}")}, "message": "Broken on arrival"}),
                0,
                0,
                None,
            )
            .unwrap();
            ids.push(self.engine.enqueue(&self.app, item).await.unwrap().0.id);
        }
        ids
    }

    /// Creates a record as the app.
    pub async fn record(&self, collection: &str, key: &str, data: Value, lock: LockPolicy) {
        let c = CollectionName::new(collection).unwrap();
        let w = RecordWrite::new(
            c.clone(),
            RecordKey::new(key).unwrap(),
            WriteOp::Put(data),
            Precondition::Absent,
            None,
        )
        .unwrap();
        self.engine.write_record(&self.app, w).await.unwrap();
        // The policy applies from now on (creating under it would need a
        // lock).
        self.engine
            .update_collection_config(&self.admin, &c, move |mut cfg| {
                cfg.lock_policy = lock;
                cfg
            })
            .await
            .unwrap();
    }

    /// The record's data now.
    pub async fn data(&self, collection: &str, key: &str) -> Value {
        let c = CollectionName::new(collection).unwrap();
        let k = RecordKey::new(key).unwrap();
        self.engine
            .store()
            .record_head(&c, &k)
            .await
            .unwrap()
            .unwrap()
            .record
            .data
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Ending chromedriver ends the browsers it started.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Ends every browser session (closing Chromium), before the app goes.
pub async fn close_all(app: &App) {
    for (_, c) in app.browsers.lock().await.drain(..) {
        let _ = c.close().await;
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("browser-screenshots");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Logs `name` in through the login form.
pub async fn login(c: &Client, base: &str, name: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        c,
        "a page after login",
        "document.querySelector('header .who') !== null",
    )
    .await
    .unwrap();
}

/// Waits (up to 20 s) until the JavaScript expression is true in the page.
pub async fn wait_for(c: &Client, what: &str, condition: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let script = format!("try {{ return !!({condition}); }} catch (e) {{ return false; }}");
        if c.execute(&script, vec![]).await?.as_bool() == Some(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what} ({condition})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a JavaScript expression in the page.
pub async fn eval(c: &Client, expression: &str) -> anyhow::Result<Value> {
    Ok(c.execute(&format!("return ({expression});"), vec![])
        .await?)
}

/// Clicks the element matching a CSS selector.
pub async fn click(c: &Client, css: &str) -> anyhow::Result<()> {
    c.find(Locator::Css(css)).await?.click().await?;
    Ok(())
}

/// Replaces the text of an input.
pub async fn fill(c: &Client, css: &str, text: &str) -> anyhow::Result<()> {
    let e = c.find(Locator::Css(css)).await?;
    e.clear().await?;
    e.send_keys(text).await?;
    Ok(())
}
