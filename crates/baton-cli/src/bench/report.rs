//! Measurements of a bench run and its summary.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// What one client task measured; merged at the end.
#[derive(Default)]
pub struct Recorder {
    latencies: BTreeMap<&'static str, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    counts: BTreeMap<&'static str, u64>,
}

impl Recorder {
    /// Counts an expected event that is not an operation (`"conflicts"`),
    /// reported per second.
    pub fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    /// Records how long one request of kind `what` took.
    pub fn latency(&mut self, what: &'static str, took: Duration) {
        // Microseconds, 1 µs .. 10 min, 3 significant figures.
        let h = self.latencies.entry(what).or_insert_with(|| {
            Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
        });
        h.saturating_record(took.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Counts an unexpected answer (`"claim 503"`, `"complete transport"`).
    pub fn error(&mut self, what: impl Into<String>) {
        *self.errors.entry(what.into()).or_default() += 1;
    }

    /// Adds another task's measurements.
    pub fn merge(&mut self, other: Recorder) {
        for (k, h) in other.latencies {
            match self.latencies.get_mut(k) {
                Some(mine) => mine.add(&h).expect("histograms of equal settings add"),
                None => {
                    self.latencies.insert(k, h);
                }
            }
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for (k, n) in other.counts {
            *self.counts.entry(k).or_default() += n;
        }
    }
}

/// Latency of one kind of request, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Which request.
    pub request: String,
    /// How many were measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

/// Whether the recorded history shows the guarantees held.
#[derive(Debug, Serialize)]
pub struct Verdict {
    /// No violation found.
    pub ok: bool,
    /// What was checked, in words.
    pub checked: String,
    /// Every violation found (empty when `ok`).
    pub problems: Vec<String>,
}

/// The result of a bench run.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The scenario.
    pub scenario: String,
    /// The database (password hidden).
    pub db: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// What one operation is (`claim+complete`, `GET /livez`).
    pub operation: String,
    /// Operations completed.
    pub operations: u64,
    /// Operations per second.
    pub operations_per_second: f64,
    /// HTTP requests per second (all kinds).
    pub requests_per_second: f64,
    /// Other counted events per second (`conflicts`).
    pub rates: BTreeMap<String, f64>,
    /// Latency per kind of request.
    pub latency: Vec<Latency>,
    /// Unexpected answers by request and status.
    pub errors: BTreeMap<String, u64>,
    /// The correctness verdict.
    pub verdict: Verdict,
}

/// What was run, for the summary.
pub struct Run<'a> {
    /// The scenario.
    pub scenario: &'a str,
    /// The database (password hidden).
    pub db: &'a str,
    /// Concurrent clients.
    pub clients: usize,
    /// How long the measurement lasted.
    pub elapsed: Duration,
    /// What one operation is.
    pub operation: &'a str,
    /// Operations completed.
    pub operations: u64,
}

impl Summary {
    /// Builds the summary from merged measurements.
    pub fn new(run: Run<'_>, rec: Recorder, verdict: Verdict) -> Self {
        let Run {
            scenario,
            db,
            clients,
            elapsed,
            operation,
            operations,
        } = run;
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let requests: u64 = rec.latencies.values().map(|h| h.len()).sum();
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            scenario: scenario.into(),
            db: db.into(),
            clients,
            seconds,
            operation: operation.into(),
            operations,
            operations_per_second: operations as f64 / seconds,
            requests_per_second: requests as f64 / seconds,
            rates: rec
                .counts
                .iter()
                .map(|(k, n)| ((*k).to_owned(), *n as f64 / seconds))
                .collect(),
            latency: rec
                .latencies
                .iter()
                .map(|(k, h)| Latency {
                    request: (*k).into(),
                    count: h.len(),
                    p50_ms: ms(h.value_at_quantile(0.5)),
                    p90_ms: ms(h.value_at_quantile(0.9)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    max_ms: ms(h.max()),
                })
                .collect(),
            errors: rec.errors,
            verdict,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "baton bench {} — {} clients, {:.1} s, database {}",
            self.scenario, self.clients, self.seconds, self.db
        )?;
        writeln!(
            f,
            "  {:>10.0} {}/s   ({} in all; {:.0} HTTP requests/s)",
            self.operations_per_second, self.operation, self.operations, self.requests_per_second
        )?;
        for (k, r) in &self.rates {
            writeln!(f, "  {r:>10.0} {k}/s")?;
        }
        writeln!(
            f,
            "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "max"
        )?;
        for l in &self.latency {
            writeln!(
                f,
                "  {:<22} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                l.request, l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            )?;
        }
        if self.errors.is_empty() {
            writeln!(f, "  errors: none")?;
        } else {
            for (k, n) in &self.errors {
                writeln!(f, "  errors: {k}: {n}")?;
            }
        }
        if self.verdict.ok {
            writeln!(f, "  verdict: OK — {}", self.verdict.checked)
        } else {
            writeln!(f, "  verdict: FAILED — {}", self.verdict.checked)?;
            for p in &self.verdict.problems {
                writeln!(f, "    {p}")?;
            }
            Ok(())
        }
    }
}

/// A spinner on the terminal (stderr) counting operations while a run
/// lasts; invisible when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
    count: Arc<AtomicU64>,
    started: Instant,
}

impl Progress {
    /// Starts counting `what`.
    pub fn start(what: &str) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}")
                .expect("a valid progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar.set_message(what.to_owned());
        Self {
            bar,
            count: Arc::default(),
            started: Instant::now(),
        }
    }

    /// The counter the clients increment.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }

    /// Refreshes the message with the current rate.
    pub fn update(&self, what: &str) {
        let n = self.count.load(Ordering::Relaxed);
        let rate = n as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!("{what}: {n} ({rate:.0}/s)"));
    }

    /// Removes the spinner.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }

    /// Waits for every client task, refreshing the spinner meanwhile, and
    /// merges their measurements; removes the spinner at the end.
    pub async fn collect(
        self,
        mut set: tokio::task::JoinSet<anyhow::Result<Recorder>>,
        what: &str,
    ) -> anyhow::Result<Recorder> {
        let mut rec = Recorder::default();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                joined = set.join_next() => match joined {
                    Some(r) => rec.merge(r??),
                    None => break,
                },
                _ = tick.tick() => self.update(what),
            }
        }
        self.finish();
        Ok(rec)
    }
}
