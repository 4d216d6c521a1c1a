//! Relaying live events between servers ([`baton_core::Store::publish_events`],
//! [`baton_core::Store::listen_events`]): a store that pushes news
//! ([`Wakeups::Notify`]) delivers every published payload, up to
//! [`MAX_EVENT_PAYLOAD`] bytes, to every listener in the order published;
//! other stores accept both calls and relay nothing.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use baton_core::{MAX_EVENT_PAYLOAD, Wakeups};

use crate::TestStore;
use crate::harness::Harness;

/// Published payloads reach the listener, in order, the largest allowed
/// one included.
pub async fn published_events_reach_listeners_in_order(db: TestStore) {
    let h = Harness::new(db).await;
    let store = h.engine.store().clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<String>>();
    store
        .listen_events(Arc::new(move |p: Option<&str>| {
            let _ = tx.send(p.map(str::to_owned));
        }))
        .await
        .expect("listen");
    let mut payloads: Vec<String> = (0..40).map(|i| format!("{{\"n\":{i}}}")).collect();
    payloads.push("x".repeat(MAX_EVENT_PAYLOAD));
    store.publish_events(&[]).await.expect("nothing to publish");
    store
        .publish_events(&payloads[..15])
        .await
        .expect("publish");
    store
        .publish_events(&payloads[15..])
        .await
        .expect("publish");
    if store.wakeups() != Wakeups::Notify {
        // The listener may be dropped at once (the channel closes) or kept
        // silent; either way nothing arrives.
        let nothing = tokio::time::timeout(StdDuration::from_millis(200), rx.recv()).await;
        assert!(
            !matches!(nothing, Ok(Some(_))),
            "a store without notifications relays nothing"
        );
        return;
    }
    let mut got = Vec::new();
    while got.len() < payloads.len() {
        let p = tokio::time::timeout(StdDuration::from_secs(10), rx.recv())
            .await
            .expect("every payload within 10 s")
            .expect("the listener lives");
        // `None` (news may have been missed) is not expected here.
        got.push(p.expect("no lost connection"));
    }
    assert_eq!(got, payloads, "every payload, in the order published");
}
