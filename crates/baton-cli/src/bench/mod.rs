//! `baton bench`: a load generator with a correctness verdict.
//!
//! Each scenario starts its own server in this process (over a temporary
//! SQLite file, or the database given with `--db`) unless `--url` names a
//! running one, drives it over HTTP with many concurrent clients for a
//! while, and prints throughput, latency percentiles (HDR histograms),
//! errors by status, and a verdict computed from the history the clients
//! recorded. `--json` prints the same summary as JSON. `http-floor`
//! measures the same HTTP stack and client answering a trivial endpoint:
//! the ceiling any handler can reach on this machine.

mod floor;
mod locks;
mod mixed;
mod queue;
mod records;
mod report;
mod server;
mod waiters;

use std::time::Duration;

use clap::{Args, Subcommand};

/// The benchmark scenarios.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Operators looping claim → complete against a pre-filled queue.
    Queue(QueueArgs),
    /// Clients acquiring and releasing random resources (exclusive and
    /// shared) with TTLs.
    Locks(LocksArgs),
    /// Clients doing read-modify-write with `If-Match` on a few hot
    /// records, retrying on 412/409.
    Records(RecordsArgs),
    /// A desk: operators claim an item naming a customer, lock the
    /// customer's record, update it with `If-Match` and the lock, release,
    /// complete.
    Mixed(MixedArgs),
    /// The same HTTP stack and client answering `GET /livez`.
    HttpFloor(FloorArgs),
    /// Many idle long-poll claimers (server in a child process): its
    /// memory, and how fast an enqueued item reaches one of them.
    Waiters(WaitersArgs),
}

/// What every scenario shares.
#[derive(Args, Clone)]
pub struct Common {
    /// Database of the server this bench starts: `sqlite://PATH`,
    /// `postgres://…`, `mysql://…`. Default: a temporary SQLite file.
    #[arg(long)]
    pub db: Option<String>,
    /// Drive a running server instead of starting one (needs `--token`).
    #[arg(long, requires = "token")]
    pub url: Option<String>,
    /// An admin token of the server given with `--url`.
    #[arg(long)]
    pub token: Option<String>,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run the in-process server on a Tokio runtime of its own with this
    /// many workers (threads named `baton-server`), apart from the
    /// clients', so a profiler can tell the two apart. Default: one
    /// runtime for both.
    #[arg(long)]
    pub server_threads: Option<usize>,
}

impl Common {
    fn duration(&self) -> anyhow::Result<Duration> {
        anyhow::ensure!(
            self.duration > 0.0 && self.duration <= 3600.0,
            "--duration must be in (0, 3600] seconds"
        );
        Ok(Duration::from_secs_f64(self.duration))
    }
}

/// `baton bench queue`.
#[derive(Args, Clone)]
pub struct QueueArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent operators, each looping claim → complete.
    #[arg(long, default_value_t = 64)]
    pub operators: usize,
    /// Items enqueued before the measurement starts.
    #[arg(long, default_value_t = 20_000)]
    pub items: usize,
    /// Producers enqueueing during the measurement.
    #[arg(long, default_value_t = 0)]
    pub producers: usize,
    /// Ready items bulk-loaded into the database before the server starts
    /// (SQLite and PostgreSQL; the bench's own server only).
    #[arg(long, default_value_t = 0)]
    pub ready: u64,
    /// Finished items bulk-loaded into the database before the server
    /// starts, as if completed earlier.
    #[arg(long, default_value_t = 0)]
    pub done: u64,
    /// After each completion the operator enqueues a new item, so the
    /// queue keeps its size for the whole run (one more request per
    /// operation, timed apart as `enqueue`).
    #[arg(long)]
    pub refill: bool,
    /// Target claim+complete pairs per second over all operators (each
    /// paces itself to its share); unlimited by default. For latency at
    /// a given load, e.g. half the peak.
    #[arg(long)]
    pub rate: Option<f64>,
}

/// `baton bench locks`.
#[derive(Args, Clone)]
pub struct LocksArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent clients, each looping acquire → release.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Distinct resources; each acquire takes 1 to 3 of them at random.
    #[arg(long, default_value_t = 2048)]
    pub resources: usize,
    /// Fraction of acquires that are exclusive (the rest are shared).
    #[arg(long, default_value_t = 0.5)]
    pub exclusive: f64,
}

/// `baton bench records`.
#[derive(Args, Clone)]
pub struct RecordsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent clients, each looping read → modify → write.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Hot records the clients share (fewer records, more conflicts).
    #[arg(long, default_value_t = 16)]
    pub records: usize,
    /// The collection's conflict policy: `reject` (a whole-document `PUT`;
    /// a stale one is refused with 412) or `merge` (a `PATCH` of the
    /// client's own member, merged three-way when stale).
    #[arg(long, default_value = "reject")]
    pub policy: String,
}

/// `baton bench mixed`.
#[derive(Args, Clone)]
pub struct MixedArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent operators.
    #[arg(long, default_value_t = 64)]
    pub operators: usize,
    /// Customers (records, and the resources locked); each item names one.
    #[arg(long, default_value_t = 256)]
    pub customers: usize,
    /// Items enqueued before the measurement starts.
    #[arg(long, default_value_t = 20_000)]
    pub items: usize,
}

/// `baton bench waiters`.
#[derive(Args, Clone)]
pub struct WaitersArgs {
    #[command(flatten)]
    pub common: Common,
    /// Idle long-poll claimers (one connection each).
    #[arg(long, default_value_t = 10_000)]
    pub waiters: usize,
    /// Items enqueued one at a time, each timed until a waiter has it.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
}

/// `baton bench http-floor`.
#[derive(Args, Clone)]
pub struct FloorArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
}

/// Runs a scenario; the error is returned when the verdict is not clean,
/// so the exit status tells.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let (summary, json) = match cmd {
        BenchCommand::Queue(args) => {
            let json = args.common.json;
            (queue::run(args).await?, json)
        }
        BenchCommand::Locks(args) => {
            let json = args.common.json;
            (locks::run(args).await?, json)
        }
        BenchCommand::Records(args) => {
            let json = args.common.json;
            (records::run(args).await?, json)
        }
        BenchCommand::Mixed(args) => {
            let json = args.common.json;
            (mixed::run(args).await?, json)
        }
        BenchCommand::HttpFloor(args) => {
            let json = args.common.json;
            (floor::run(args).await?, json)
        }
        BenchCommand::Waiters(args) => {
            let json = args.common.json;
            (waiters::run(args).await?, json)
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    anyhow::ensure!(
        summary.verdict.ok,
        "correctness verdict failed: {}",
        summary.verdict.problems.join("; ")
    );
    Ok(())
}
