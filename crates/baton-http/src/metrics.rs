//! Prometheus metrics: the process-wide recorder, the HTTP request
//! middleware, and the queue-depth gauges refreshed at scrape time.
//!
//! The engine counts its own events with the `metrics` facade
//! (`baton_claims_total`, `baton_completions_total{outcome}`,
//! `baton_leases_expired_total`, ...); this module installs the recorder
//! they land in. A `metrics` recorder is global to the process, while a
//! test process starts many servers, so it is installed once and its handle
//! kept in a `OnceLock`.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use baton::Engine;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Name of the HTTP request counter.
pub const HTTP_REQUESTS: &str = "baton_http_requests_total";
/// Name of the HTTP latency histogram.
pub const HTTP_DURATION: &str = "baton_http_request_duration_seconds";
/// Name of the lock hold-time histogram.
pub const LOCK_HOLD: &str = "baton_lock_hold_seconds";
/// Name of the queue depth gauge (labels `queue`, `state`).
pub const QUEUE_ITEMS: &str = "baton_queue_items";

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use.
pub(crate) fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(install)
}

fn install() -> PrometheusHandle {
    // Buckets for the latency histogram; the list is a constant and not
    // empty, so this cannot fail, but fall back to summaries rather than
    // panic.
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(HTTP_DURATION.to_owned()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(LOCK_HOLD.to_owned()),
                &[
                    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 28_800.0, 86_400.0,
                ],
            )
        })
        .unwrap_or_else(|_| PrometheusBuilder::new());
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!(
            "another metrics recorder is installed in this process; /metrics will show only what reaches Baton's"
        );
    }
    describe();
    // Counters exist from the start (at 0), so a rate over them is defined
    // before the first event. Labelled ones appear with their first label.
    for name in UNLABELLED_ENGINE_COUNTERS {
        counter!(*name).increment(0);
    }
    handle
}

/// The engine's counters that carry no label.
const UNLABELLED_ENGINE_COUNTERS: &[&str] = &[
    "baton_claims_total",
    "baton_releases_total",
    "baton_revocations_total",
    "baton_leases_expired_total",
    "baton_items_parked_total",
    "baton_items_enqueued_total",
    "baton_stale_token_refusals_total",
    "baton_lock_conflicts_total",
    "baton_lock_stale_refusals_total",
];

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency by method and route template (long-polls included)"
    );
    describe_gauge!(
        QUEUE_ITEMS,
        "Items per queue and state, read at scrape time"
    );
    describe_gauge!(
        "baton_queue_oldest_ready_age_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest claimable item per queue (0 when none)"
    );
    describe_gauge!(
        "baton_claimers_waiting",
        "Claims long-polling per queue in this process"
    );
    describe_gauge!(
        "baton_store_up",
        "1 when the store answered the scrape's statistics query"
    );
    describe_counter!("baton_claims_total", "Leases granted");
    describe_counter!("baton_completions_total", "Items completed, by outcome");
    describe_counter!("baton_releases_total", "Leases given back by their holder");
    describe_counter!("baton_revocations_total", "Leases revoked by a supervisor");
    describe_counter!(
        "baton_leases_expired_total",
        "Leases that ran out (found by the sweeper)"
    );
    describe_counter!(
        "baton_items_parked_total",
        "Items parked after too many expired leases"
    );
    describe_counter!("baton_items_enqueued_total", "Items created");
    describe_counter!(
        "baton_stale_token_refusals_total",
        "Actions refused for carrying a stale fencing token"
    );
    describe_counter!("baton_lock_grants_total", "Locks granted, by mode");
    describe_counter!(
        "baton_lock_conflicts_total",
        "Lock requests and upgrades refused with 423 (after their wait, if any)"
    );
    describe_counter!(
        "baton_lock_waits_total",
        "Lock requests that had to wait, by outcome (granted, timed_out)"
    );
    describe_counter!(
        "baton_lock_releases_total",
        "Locks ended, by cause (released, expired, forced); expiries as recorded by this process's sweeper"
    );
    describe_counter!(
        "baton_lock_stale_refusals_total",
        "Actions refused because the lock had ended: the holder's token is stale (410)"
    );
    describe_histogram!(
        LOCK_HOLD,
        metrics::Unit::Seconds,
        "How long locks were held, from grant to end"
    );
    describe_gauge!(
        "baton_lock_requests_waiting",
        "Lock requests waiting in this process"
    );
}

/// Middleware: counts every request by method, route template (never the
/// raw path, so ids do not explode the label set) and status.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Refreshes the queue gauges from the store and renders every metric in
/// the Prometheus text format.
pub(crate) async fn render(engine: &Engine) -> String {
    let handle = prometheus();
    match engine.store().queue_stats(engine.now()).await {
        Ok(stats) => {
            gauge!("baton_store_up").set(1.0);
            let waiting: HashMap<String, usize> = engine
                .waiting_claimers()
                .into_iter()
                .map(|(q, n)| (q.to_string(), n))
                .collect();
            for q in stats {
                let queue = q.queue.to_string();
                for (state, n) in [
                    ("scheduled", q.scheduled),
                    ("ready", q.ready),
                    ("leased", q.leased),
                    ("parked", q.parked),
                    ("done", q.done),
                ] {
                    gauge!(QUEUE_ITEMS, "queue" => queue.clone(), "state" => state).set(n as f64);
                }
                gauge!("baton_queue_oldest_ready_age_seconds", "queue" => queue.clone())
                    .set(q.oldest_ready_age_seconds.unwrap_or(0.0));
                let w = waiting.get(&queue).copied().unwrap_or(0);
                gauge!("baton_claimers_waiting", "queue" => queue).set(w as f64);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "queue statistics unavailable for /metrics");
            gauge!("baton_store_up").set(0.0);
        }
    }
    gauge!("baton_lock_requests_waiting").set(engine.waiting_lock_requests() as f64);
    handle.run_upkeep();
    handle.render()
}
