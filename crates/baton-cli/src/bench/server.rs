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
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Starts a server (or takes the one at `--url`).
    pub async fn start(common: &Common, connections: usize) -> anyhow::Result<Target> {
        let client = Client::builder()
            .pool_max_idle_per_host(connections.max(1) * 2)
            .tcp_nodelay(true)
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        let run = format!("bench-{:08x}", rand::random::<u32>());
        if let (Some(url), Some(token)) = (&common.url, &common.token) {
            return Ok(Target {
                url: url.trim_end_matches('/').to_owned(),
                admin: token.clone(),
                client,
                run,
                db: "(external server)".into(),
                own: None,
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
        let engine = Engine::open(&db)
            .await
            .with_context(|| format!("opening {}", baton::redact(&db)))?;
        let (_, admin) = engine
            .bootstrap_principal(&format!("{run}-admin"), Role::Admin)
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(baton_http::serve(
            listener,
            engine,
            baton_http::HttpSettings::default(),
            shutdown.clone(),
        ));
        Ok(Target {
            url,
            admin,
            client,
            run,
            db: baton::redact(&db),
            own: Some((shutdown, server)),
            _dir: dir,
        })
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
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some((shutdown, server)) = self.own {
            shutdown.cancel();
            server.await??;
        }
        Ok(())
    }
}
