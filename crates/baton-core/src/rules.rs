//! The lease rules, as pure functions over [`Item`].
//!
//! A store loads an item inside its transaction, calls one of these
//! functions with the caller and `now`, and writes back the item and the
//! returned [`ItemEvent`] in the same transaction — or, when the rule
//! refuses, writes nothing. The store never decides what an operation
//! means; these functions never touch I/O. Choosing *which* item a claim
//! gets (priority, age, kinds, cooldown) is the store's index-backed query,
//! specified by [`claimable`] and the conformance suite.

use chrono::Duration;
use serde_json::json;

use crate::error::describe_expiry;
use crate::{
    ClaimRequest, CompleteRequest, Completion, Error, EventKind, FencingToken, Item, ItemEvent,
    ItemState, Lease, NewItem, QueueConfig, Result, Timestamp,
};

fn event(item: &Item, kind: EventKind, actor: Option<&str>, now: Timestamp) -> ItemEvent {
    ItemEvent {
        item_id: item.id,
        at: now,
        kind,
        actor: actor.map(str::to_owned),
        token: None,
        queue: item.queue.clone(),
        detail: json!({}),
    }
}

/// The item a store inserts for `new` (with `id` 0 until the store assigns
/// one) and its `enqueued` event.
pub fn enqueue(new: &NewItem, actor: &str, now: Timestamp) -> (Item, ItemEvent) {
    let available_at = now + new.delay;
    let item = Item {
        id: 0,
        queue: new.queue.clone(),
        kind: new.kind.clone(),
        payload: new.payload.clone(),
        priority: new.priority,
        state: if available_at > now {
            ItemState::Scheduled
        } else {
            ItemState::Ready
        },
        available_at,
        dedupe_key: new.dedupe_key.clone(),
        attempts: 0,
        token: FencingToken(0),
        lease: None,
        released_by: None,
        released_until: None,
        completion: None,
        created_at: now,
        updated_at: now,
    };
    let mut ev = event(&item, EventKind::Enqueued, Some(actor), now);
    ev.detail =
        json!({ "kind": item.kind, "priority": item.priority, "available_at": available_at });
    (item, ev)
}

/// Whether `item` may be handed to `req.holder` by a claim at `now`:
/// ready, due, of a wanted kind, and not recently released by this holder.
/// Stores select by this predicate (with an index); the conformance suite
/// checks that they agree with it.
pub fn claimable(item: &Item, req: &ClaimRequest, now: Timestamp) -> bool {
    item.state == ItemState::Ready
        && item.available_at <= now
        && req.wants(&item.kind)
        && !(item.released_by.as_deref() == Some(req.holder.as_str())
            && item.released_until.is_some_and(|until| until > now))
}

/// Leases a ready item to `req.holder`: a new, higher fencing token and an
/// expiry `req.lease` from now.
pub fn claim(item: &mut Item, req: &ClaimRequest, now: Timestamp) -> Result<ItemEvent> {
    if item.state != ItemState::Ready {
        return Err(Error::WrongState {
            item: item.id,
            state: item.state,
            reason: "only ready items can be claimed".into(),
        });
    }
    let token = item.token.next();
    let lease = Lease {
        token,
        holder: req.holder.clone(),
        claimed_at: now,
        expires_at: now + req.lease,
    };
    item.token = token;
    item.state = ItemState::Leased;
    item.lease = Some(lease.clone());
    item.updated_at = now;
    let mut ev = event(item, EventKind::Claimed, Some(&req.holder), now);
    ev.token = Some(token);
    ev.detail = json!({ "expires_at": lease.expires_at });
    Ok(ev)
}

/// Checks that `caller` may act on `item` with `token` at `now`: the item is
/// leased, the token is the current one, the lease is live, and the caller
/// holds it. A stale token is refused before the holder is looked at, so a
/// caller learns that its lease is gone rather than who has it now.
pub fn check_lease<'a>(
    item: &'a Item,
    caller: &str,
    token: FencingToken,
    now: Timestamp,
) -> Result<&'a Lease> {
    let stale = |reason: String| Error::StaleToken {
        item: item.id,
        presented: token,
        current: item.token,
        reason,
    };
    if token != item.token {
        return Err(stale(if token > item.token {
            "no such token was ever issued".into()
        } else {
            "the item has been claimed again since".into()
        }));
    }
    let lease = match (&item.state, &item.lease) {
        (ItemState::Leased, Some(lease)) => lease,
        (ItemState::Done, _) => return Err(stale("the item is already completed".into())),
        (state, _) => {
            return Err(stale(format!(
                "the lease has ended; the item is {state} (released, revoked or expired)"
            )));
        }
    };
    if !lease.is_live(now) {
        return Err(stale(describe_expiry(lease.expires_at, now)));
    }
    if lease.holder != caller {
        return Err(Error::NotHolder {
            item: item.id,
            holder: lease.holder.clone(),
        });
    }
    Ok(lease)
}

/// Extends the caller's lease to `now + lease`.
pub fn heartbeat(
    item: &mut Item,
    caller: &str,
    token: FencingToken,
    lease: Duration,
    now: Timestamp,
) -> Result<ItemEvent> {
    check_lease(item, caller, token, now)?;
    let expires_at = now + lease;
    if let Some(l) = item.lease.as_mut() {
        l.expires_at = expires_at;
    }
    item.updated_at = now;
    let mut ev = event(item, EventKind::Extended, Some(caller), now);
    ev.token = Some(token);
    ev.detail = json!({ "expires_at": expires_at });
    Ok(ev)
}

/// Gives the item back to the queue, claimable again after `delay`, and not
/// offered back to the caller for the queue's skip cooldown.
pub fn release(
    item: &mut Item,
    caller: &str,
    token: FencingToken,
    delay: Duration,
    config: &QueueConfig,
    now: Timestamp,
) -> Result<ItemEvent> {
    check_lease(item, caller, token, now)?;
    let available_at = now + delay;
    item.state = if delay > Duration::zero() {
        ItemState::Scheduled
    } else {
        ItemState::Ready
    };
    item.available_at = available_at;
    item.lease = None;
    item.released_by = Some(caller.to_owned());
    item.released_until = Some(now + Duration::seconds(config.skip_cooldown_seconds.into()));
    item.updated_at = now;
    let mut ev = event(item, EventKind::Released, Some(caller), now);
    ev.token = Some(token);
    ev.detail = json!({ "available_at": available_at });
    Ok(ev)
}

/// Ends the item with an outcome, or with the escalation outcome and
/// `escalate_to`, moves it to another queue as a fresh ready item (same id;
/// its fencing token keeps increasing).
pub fn complete(
    item: &mut Item,
    caller: &str,
    req: &CompleteRequest,
    config: &QueueConfig,
    now: Timestamp,
) -> Result<ItemEvent> {
    check_lease(item, caller, req.token, now)?;
    if !config.outcomes.contains(&req.outcome) {
        return Err(Error::invalid(
            "outcome",
            format!(
                "{:?} is not an outcome of queue {}; one of {}",
                req.outcome,
                item.queue,
                config.outcomes.join(", ")
            ),
        ));
    }
    if let Some(target) = &req.escalate_to {
        if config.escalation_outcome.as_deref() != Some(req.outcome.as_str()) {
            return Err(Error::invalid(
                "escalate_to",
                match &config.escalation_outcome {
                    Some(o) => format!("only the outcome {o:?} may move an item to another queue"),
                    None => format!("queue {} does not allow escalation", item.queue),
                },
            ));
        }
        if *target == item.queue {
            return Err(Error::invalid(
                "escalate_to",
                "the item is already in that queue",
            ));
        }
        let from = item.queue.clone();
        let mut ev = event(item, EventKind::Escalated, Some(caller), now);
        ev.token = Some(req.token);
        ev.detail = json!({ "outcome": req.outcome, "note": req.note, "to": target });
        item.queue = target.clone();
        item.state = ItemState::Ready;
        item.available_at = now;
        item.lease = None;
        item.attempts = 0;
        item.released_by = None;
        item.released_until = None;
        item.updated_at = now;
        debug_assert_ne!(from, item.queue);
        return Ok(ev);
    }
    item.state = ItemState::Done;
    item.lease = None;
    item.completion = Some(Completion {
        outcome: req.outcome.clone(),
        note: req.note.clone(),
        by: caller.to_owned(),
        at: now,
    });
    item.updated_at = now;
    let mut ev = event(item, EventKind::Completed, Some(caller), now);
    ev.token = Some(req.token);
    ev.detail = json!({ "outcome": req.outcome, "note": req.note });
    Ok(ev)
}

/// Whether the item's lease has run out at `now`.
pub fn lease_expired(item: &Item, now: Timestamp) -> bool {
    item.state == ItemState::Leased && item.lease.as_ref().is_none_or(|l| !l.is_live(now))
}

/// Returns an item whose lease ran out to the queue, or parks it when this
/// was its `max_attempts`-th expired lease. `None` when the lease is live.
pub fn expire(item: &mut Item, config: &QueueConfig, now: Timestamp) -> Option<ItemEvent> {
    if !lease_expired(item, now) {
        return None;
    }
    let lease = item.lease.take();
    item.attempts += 1;
    let parked = item.attempts >= config.max_attempts;
    item.state = if parked {
        ItemState::Parked
    } else {
        ItemState::Ready
    };
    item.available_at = now;
    item.updated_at = now;
    let kind = if parked {
        EventKind::Parked
    } else {
        EventKind::Expired
    };
    let mut ev = event(item, kind, None, now);
    ev.token = lease.as_ref().map(|l| l.token);
    ev.detail = json!({
        "holder": lease.as_ref().map(|l| l.holder.clone()),
        "expired_at": lease.as_ref().map(|l| l.expires_at),
        "attempts": item.attempts,
        "max_attempts": config.max_attempts,
    });
    Some(ev)
}

/// Makes a scheduled item ready once its time has come. No event: the
/// `available_at` in the enqueue or release event already says when.
pub fn promote(item: &mut Item, now: Timestamp) -> bool {
    if item.state == ItemState::Scheduled && item.available_at <= now {
        item.state = ItemState::Ready;
        true
    } else {
        false
    }
}

/// A supervisor takes the lease away; the item is ready again at once and
/// the holder's token is stale from now on.
pub fn revoke(item: &mut Item, actor: &str, now: Timestamp) -> Result<ItemEvent> {
    if item.state != ItemState::Leased {
        return Err(Error::WrongState {
            item: item.id,
            state: item.state,
            reason: "only a leased item can be revoked".into(),
        });
    }
    let lease = item.lease.take();
    item.state = ItemState::Ready;
    item.available_at = now;
    item.updated_at = now;
    let mut ev = event(item, EventKind::Revoked, Some(actor), now);
    ev.token = lease.as_ref().map(|l| l.token);
    ev.detail = json!({ "holder": lease.map(|l| l.holder) });
    Ok(ev)
}

/// A supervisor puts a parked item back into circulation with its attempt
/// count reset.
pub fn requeue(item: &mut Item, actor: &str, now: Timestamp) -> Result<ItemEvent> {
    if item.state != ItemState::Parked {
        return Err(Error::WrongState {
            item: item.id,
            state: item.state,
            reason: "only a parked item can be requeued".into(),
        });
    }
    item.state = ItemState::Ready;
    item.attempts = 0;
    item.available_at = now;
    item.updated_at = now;
    Ok(event(item, EventKind::Requeued, Some(actor), now))
}

#[cfg(test)]
mod tests;
