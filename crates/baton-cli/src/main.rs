//! The `baton` command: a thin shell over the library. Parses arguments,
//! opens the store, and hands over to `baton-http` or the engine.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use baton::{Engine, Role, StoreSettings, redact};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

mod bench;

/// mimalloc: a request allocates many small, short-lived objects (JSON,
/// rows, futures) across threads, which glibc's allocator serves slowly
/// (measured: see README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Baton: work queues with leases, so no request is served twice.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the database is, and how to connect to it.
#[derive(clap::Args)]
struct DbArg {
    /// Database URL: `sqlite://PATH` (created if missing; one server only),
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` or
    /// `mysql://USER:PASSWORD@HOST:PORT/DB` (MariaDB too; several servers
    /// may share one). TLS options go in the URL (`sslmode=verify-full`,
    /// `sslrootcert=PATH` for PostgreSQL; `ssl-mode=VERIFY_IDENTITY`,
    /// `ssl-ca=PATH` for MySQL).
    #[arg(long, env = "BATON_DB", default_value = "sqlite://baton.db")]
    db: String,
    /// PostgreSQL/MySQL: most connections this server opens.
    #[arg(long, env = "BATON_DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    db_max_connections: u32,
    /// PostgreSQL/MySQL: seconds a request waits for a connection (or for
    /// the database to come back) before it is answered 503.
    #[arg(long, env = "BATON_DB_ACQUIRE_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    db_acquire_timeout: u64,
    /// PostgreSQL/MySQL: seconds one statement may run before the database
    /// cancels it.
    #[arg(long, env = "BATON_DB_STATEMENT_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    db_statement_timeout: u64,
}

impl DbArg {
    async fn open(&self) -> anyhow::Result<Engine> {
        let settings = StoreSettings {
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_secs(self.db_acquire_timeout),
            statement_timeout: Duration::from_secs(self.db_statement_timeout),
            ..StoreSettings::default()
        };
        Engine::open_with(&self.db, &settings)
            .await
            .with_context(|| format!("opening {}", redact(&self.db)))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrates the database first).
    Serve {
        #[command(flatten)]
        db: DbArg,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, env = "BATON_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Apply pending schema migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbArg,
    },
    /// Load-test a server (started here unless `--url`) and check the
    /// guarantees held; exits non-zero when they did not.
    Bench {
        #[command(subcommand)]
        scenario: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a principal (created with ROLE if new) and print
    /// it alone on stdout.
    Create {
        #[command(flatten)]
        db: DbArg,
        /// Principal name, e.g. `alice`.
        #[arg(long)]
        name: String,
        /// admin, supervisor, operator or app.
        #[arg(long)]
        role: Role,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { db, listen } => serve(&db, listen).await,
        Command::Token {
            command: TokenCommand::Create { db, name, role },
        } => {
            let engine = db.open().await?;
            let (_, token) = engine.bootstrap_principal(&name, role).await?;
            println!("{token}");
            Ok(())
        }
        Command::Bench { scenario } => bench::run(scenario).await,
        Command::Migrate { db } => {
            db.open().await.context("migrating the database")?;
            eprintln!("{}: schema is up to date", redact(&db.db));
            Ok(())
        }
    }
}

async fn serve(db_arg: &DbArg, listen: SocketAddr) -> anyhow::Result<()> {
    let engine = db_arg.open().await?;
    let db = redact(&db_arg.db);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    if let Some(token) = engine.ensure_admin().await? {
        println!("First start: created principal `admin`. Its token (shown only once):");
        println!("  {token}");
        println!("Create more with: baton token create --db {db} --name NAME --role ROLE");
    }
    println!(
        "Baton is listening on http://{addr}  (API under /v1, OpenAPI at http://{addr}/openapi.json; database {db})"
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    baton_http::serve(
        listener,
        engine,
        baton_http::HttpSettings::default(),
        shutdown,
    )
    .await?;
    eprintln!("Baton stopped cleanly");
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM: in-flight requests finish,
/// then the server stops.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; finishing in-flight requests");
    shutdown.cancel();
}
