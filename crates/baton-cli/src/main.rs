//! The `baton` command: a thin shell over the library. Parses arguments,
//! opens the store, and hands over to `baton-http` or the engine.

use std::net::SocketAddr;

use anyhow::Context;
use baton::{Engine, Role};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Baton: work queues with leases, so no request is served twice.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the database is.
#[derive(clap::Args)]
struct DbArg {
    /// Database URL: `sqlite://PATH` (created if missing).
    #[arg(long, env = "BATON_DB", default_value = "sqlite://baton.db")]
    db: String,
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
        Command::Serve { db, listen } => serve(&db.db, listen).await,
        Command::Token {
            command: TokenCommand::Create { db, name, role },
        } => {
            let engine = Engine::open(&db.db).await.context("opening the database")?;
            let (_, token) = engine.bootstrap_principal(&name, role).await?;
            println!("{token}");
            Ok(())
        }
        Command::Migrate { db } => {
            Engine::open(&db.db)
                .await
                .context("migrating the database")?;
            eprintln!("{}: schema is up to date", db.db);
            Ok(())
        }
    }
}

async fn serve(db: &str, listen: SocketAddr) -> anyhow::Result<()> {
    let engine = Engine::open(db)
        .await
        .with_context(|| format!("opening {db}"))?;
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
