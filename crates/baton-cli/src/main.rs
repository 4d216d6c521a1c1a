//! The `baton` command: a thin shell over the library. Parses arguments,
//! opens the store, and hands over to `baton-http` or the engine.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use baton::{Engine, Principal, Role, StoreSettings, redact};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

mod bench;
mod demo;

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
    /// Manage people (principals with a password, for the web pages).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Apply pending schema migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbArg,
    },
    /// Seed a realistic data set to try Baton with: people with passwords
    /// (printed), a queue of customer requests, client and employee
    /// records. Safe to run again.
    Demo {
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
    /// List a principal's tokens: id and creation time (never the token).
    List {
        #[command(flatten)]
        db: DbArg,
        /// Principal name.
        name: String,
    },
    /// Revoke one of a principal's tokens by its id (from `token list`).
    Revoke {
        #[command(flatten)]
        db: DbArg,
        /// Principal name.
        name: String,
        /// Token id: 16 hex digits.
        id: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a principal with a password. The password is read from
    /// standard input (prompted for, without echo, on a terminal; else
    /// the first line), never from the command line.
    Create {
        #[command(flatten)]
        db: DbArg,
        /// Principal name, e.g. `alice`.
        name: String,
        /// admin, supervisor, operator or app.
        #[arg(long)]
        role: Role,
        /// Create it without a password (it cannot log in to the web
        /// pages; give it a token with `baton token create`).
        #[arg(long)]
        no_password: bool,
    },
    /// Set a principal's password, read from standard input as for
    /// `user create`.
    Passwd {
        #[command(flatten)]
        db: DbArg,
        /// Principal name.
        name: String,
    },
    /// List every principal: name and role.
    List {
        #[command(flatten)]
        db: DbArg,
    },
}

/// Who the CLI acts as: whoever can open the database is trusted with it.
fn cli_admin() -> Principal {
    Principal {
        id: 0,
        name: "baton-cli".into(),
        role: Role::Admin,
    }
}

/// Reads a password: prompted for twice without echo on a terminal, else
/// the first line of standard input (without its line ending).
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_owned())
}

async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            db,
            name,
            role,
            no_password,
        } => {
            let password = if no_password {
                None
            } else {
                Some(read_password()?)
            };
            let engine = db.open().await?;
            let p = engine.create_user(&name, role, password.as_deref()).await?;
            eprintln!("created {} ({})", p.name, p.role);
        }
        UserCommand::Passwd { db, name } => {
            let password = read_password()?;
            let engine = db.open().await?;
            engine.set_password(&cli_admin(), &name, &password).await?;
            eprintln!("password of {name} set");
        }
        UserCommand::List { db } => {
            let engine = db.open().await?;
            for p in engine.principals(&cli_admin()).await? {
                println!("{}\t{}", p.name, p.role);
            }
        }
    }
    Ok(())
}

/// `mi_option_arena_eager_commit` in mimalloc's `mi_option_e` (the same
/// number in mimalloc 2 and 3).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// On Linux mimalloc commits its arenas eagerly by default, and memory
/// freed in an eagerly committed arena stays resident: with 10,000 waiting
/// long-polls the server sat at 359 MB RSS in some runs (248 MB in others,
/// by allocation timing), and at 223 MB in every run without it (`baton
/// bench waiters`, README, Performance). The option must be set before the
/// first allocation reserves the first arena, so this runs as an ELF
/// constructor, before Rust's runtime starts.
extern "C" fn tune_allocator() {
    // SAFETY: `mi_option_set` only stores an option's value.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

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
        Command::Token {
            command: TokenCommand::List { db, name },
        } => {
            let engine = db.open().await?;
            for t in engine.tokens(&cli_admin(), &name).await? {
                println!("{}\t{}", t.id, t.created_at.to_rfc3339());
            }
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Revoke { db, name, id },
        } => {
            let engine = db.open().await?;
            engine.revoke_token(&cli_admin(), &name, &id).await?;
            eprintln!("token {id} of {name} revoked");
            Ok(())
        }
        Command::User { command } => user(command).await,
        Command::Bench { scenario } => bench::run(scenario).await,
        Command::Demo { db } => demo::run(&db.open().await?, &redact(&db.db)).await,
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
        // The admin needs a password for the web pages too.
        let password = baton::generate_token()
            .trim_start_matches(baton::identity::TOKEN_PREFIX)
            .chars()
            .take(20)
            .collect::<String>();
        if let Some(admin) = engine.store().principal("admin").await? {
            engine.set_password(&admin, "admin", &password).await?;
        }
        println!("First start: created principal `admin` (shown only once):");
        println!("  API token: {token}");
        println!("  password:  {password}");
        println!(
            "Create more with: baton user create --db {db} NAME --role ROLE, or try `baton demo --db {db}`"
        );
    }
    println!(
        "Baton is listening on http://{addr}  (open it in a browser; API under /v1, OpenAPI at http://{addr}/openapi.json; database {db})"
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
