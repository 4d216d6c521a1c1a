//! What an idle long-poll claimer costs the server in memory.
//!
//! The target is 10,000 waiting claimers in at most 300 MB
//! (`baton bench waiters` measures the RSS); this test pins the cause of
//! the one regression found so far. Serving axum's `Router` directly made
//! every connection rebuild all routes (about 100 KB per connection);
//! `baton_http::serve` now hands each connection one clone of the finished
//! router. A global allocator counts the bytes live on the heap before and
//! after `N` connections are left waiting; what remains per connection is
//! hyper's read and write buffers (8–16 KB each) and the suspended request.
//! This test is its own binary, so its allocator counts nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use baton::{Engine, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc`/`realloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const WAITERS: usize = 200;
/// Measured after the fix: about 31 KB in a debug build (hyper's buffers dominate);
/// before it, 95 KB.
const LIMIT_PER_CONNECTION: isize = 48 * 1024;

fn claim_request(token: &str, wait_seconds: u32) -> Vec<u8> {
    let body = format!("{{\"wait_seconds\":{wait_seconds}}}");
    format!(
        "POST /v1/queues/memory/claim HTTP/1.1\r\nHost: baton\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_long_poll_connection_costs_little_heap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("baton.db").display());
    let engine = Engine::open(&url).await.expect("open");
    let (_, token) = engine
        .bootstrap_principal("op", Role::Operator)
        .await
        .expect("principal");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(baton_http::serve(
        listener,
        engine.clone(),
        baton_http::HttpSettings::default(),
        shutdown.clone(),
    ));

    // Warm up what is allocated once: the token cache, the queue's waiter
    // list, metrics, the writer's statements.
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&claim_request(&token, 0)).await.expect("send");
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.expect("answer");
        assert_eq!(&head, b"HTTP/1.1 204", "an empty queue answers 204");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let before = LIVE.load(Ordering::Relaxed);
    let request = claim_request(&token, 30);
    let mut streams = Vec::with_capacity(WAITERS);
    for _ in 0..WAITERS {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&request).await.expect("send");
        streams.push(s);
    }
    let waiting = || {
        engine
            .waiting_claimers()
            .into_iter()
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    for _ in 0..1000 {
        if waiting() == WAITERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(waiting(), WAITERS, "every connection is a waiting claimer");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_connection = (LIVE.load(Ordering::Relaxed) - before) / WAITERS as isize;

    shutdown.cancel();
    drop(streams);
    server.await.expect("join").expect("serve");
    assert!(
        per_connection < LIMIT_PER_CONNECTION,
        "a waiting long-poll holds {per_connection} bytes of heap (limit {LIMIT_PER_CONNECTION})"
    );
    println!("heap per waiting long-poll connection: {per_connection} bytes");
}
