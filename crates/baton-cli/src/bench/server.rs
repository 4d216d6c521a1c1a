//! The server a bench drives: started in this process over a temporary
//! SQLite file (or `--db`), or a running one given with `--url`.

use anyhow::Context;
use baton::{Engine, Role};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Common;

/// A server to drive, and what must live as long as it.
pub struct Target {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// An admin token.
    pub admin: String,
    /// The HTTP client every bench task shares (keep-alive pool).
    pub client: Client,
    /// A name no earlier run used, for queues and principals.
    pub run: String,
    /// What the database is, for the summary.
    pub db: String,
    own: Option<(CancellationToken, JoinHandle<std::io::Result<()>>)>,
    /// The server's own runtime (`--server-threads`).
    runtime: Option<tokio::runtime::Runtime>,
    child: Option<std::process::Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Starts a server in this process (or takes the one at `--url`).
    pub async fn start(common: &Common, connections: usize) -> anyhow::Result<Target> {
        Self::start_with(common, connections, None).await
    }

    /// Starts a server in this process, first bulk-loading its database
    /// with a queue named after the run (see
    /// [`baton_store::bench::prefill_queue`]).
    pub async fn start_with(
        common: &Common,
        connections: usize,
        prefill: Option<baton_store::bench::Prefill>,
    ) -> anyhow::Result<Target> {
        let client = Client::builder()
            .pool_max_idle_per_host(connections.max(1) * 2)
            .tcp_nodelay(true)
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        let run = format!("bench-{:08x}", rand::random::<u32>());
        if let (Some(url), Some(token)) = (&common.url, &common.token) {
            anyhow::ensure!(
                prefill.is_none(),
                "a prefilled queue needs the bench's own server (no --url)"
            );
            return Ok(Target {
                url: url.trim_end_matches('/').to_owned(),
                admin: token.clone(),
                client,
                run,
                db: "(external server)".into(),
                own: None,
                runtime: None,
                child: None,
                _dir: None,
            });
        }
        let (db, dir) = match &common.db {
            Some(db) => (db.clone(), None),
            None => {
                let dir = tempfile::tempdir()?;
                let db = format!("sqlite://{}", dir.path().join("bench.db").display());
                (db, Some(dir))
            }
        };
        if let Some(what) = prefill {
            baton_store::bench::prefill_queue(&db, &run, what)
                .await
                .with_context(|| format!("prefilling {}", baton::redact(&db)))?;
        }
        let shutdown = CancellationToken::new();
        let (url, admin, server, runtime) = match common.server_threads {
            None => {
                let (url, admin, serving) =
                    serve_own(db.clone(), run.clone(), shutdown.clone()).await?;
                (url, admin, tokio::spawn(serving), None)
            }
            Some(threads) => {
                anyhow::ensure!(
                    (1..=64).contains(&threads),
                    "--server-threads must be 1..=64"
                );
                // The server's own runtime: its workers are threads named
                // `baton-server`, the clients stay on the bench's runtime.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("baton-server")
                    .enable_all()
                    .build()?;
                let (db, run, stop) = (db.clone(), run.clone(), shutdown.clone());
                let (tx, rx) = tokio::sync::oneshot::channel();
                let server = rt.spawn(async move {
                    match serve_own(db, run, stop).await {
                        Ok((url, admin, serving)) => {
                            let _ = tx.send(Ok((url, admin)));
                            serving.await
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            Ok(())
                        }
                    }
                });
                let (url, admin) = rx.await.context("the server's runtime stopped")??;
                (url, admin, server, Some(rt))
            }
        };
        Ok(Target {
            url,
            admin,
            client,
            run,
            db: baton::redact(&db),
            own: Some((shutdown, server)),
            runtime,
            child: None,
            _dir: dir,
        })
    }

    /// Starts `baton serve` as a child process of this binary (so that its
    /// memory can be measured apart from the clients'), over `--db` or a
    /// temporary SQLite file; or takes the server at `--url`.
    pub async fn spawn(common: &Common, connections: usize) -> anyhow::Result<Target> {
        if common.url.is_some() {
            return Self::start(common, connections).await;
        }
        let mut t = Self::start(common, connections).await?;
        // Only the client and the temporary directory are kept from the
        // in-process start; its server stops and the child takes over the
        // same database.
        if let Some((shutdown, server)) = t.own.take() {
            shutdown.cancel();
            server.await??;
        }
        let db = match (&common.db, &t._dir) {
            (Some(db), _) => db.clone(),
            (None, Some(dir)) => format!("sqlite://{}", dir.path().join("bench.db").display()),
            (None, None) => anyhow::bail!("no database for the child server"),
        };
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--db", &db])
            .env("BATON_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting baton serve")?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .context("baton serve exited before listening")??;
            if let Some(rest) = line.strip_prefix("Baton is listening on ") {
                break rest.split_whitespace().next().context("a URL")?.to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        t.url = url;
        t.child = Some(child);
        Ok(t)
    }

    /// The resident memory of the child server, in bytes (Linux).
    pub fn child_rss(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// Creates a principal through the API; returns its token.
    pub async fn principal(&self, name: &str, role: &str) -> anyhow::Result<String> {
        let resp = self
            .client
            .post(format!("{}/v1/principals", self.url))
            .bearer_auth(&self.admin)
            .json(&json!({"name": name, "role": role}))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "creating {name}: {status} {body}"
        );
        Ok(body["token"]
            .as_str()
            .context("a token in the answer")?
            .to_owned())
    }

    /// Stops the server this bench started.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some((shutdown, server)) = self.own.take() {
            shutdown.cancel();
            server.await??;
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // Dropping a runtime would block, which is refused in async code.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Opens the engine over `db`, makes the run's admin and binds a port;
/// returns the URL, the admin's token and the server to run.
async fn serve_own(
    db: String,
    run: String,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    String,
    String,
    impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
)> {
    let engine = Engine::open(&db)
        .await
        .with_context(|| format!("opening {}", baton::redact(&db)))?;
    let (_, admin) = engine
        .bootstrap_principal(&format!("{run}-admin"), Role::Admin)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let serving = baton_http::serve(
        listener,
        engine,
        baton_http::HttpSettings::default(),
        shutdown,
    );
    Ok((url, admin, serving))
}
