//! Live events fan out from one reader to every open stream.
//!
//! Without this, each open stream would query the store on every commit that wrote
//! events (5,000 streams: 5,000 queries for one broadcast). Instead one task per
//! broker reads the new rows once (`id > last dispatched`, in id order) whenever
//! events were committed here or — through NOTIFY — on another replica, and hands
//! each to the channels of its recipient's open streams.
//!
//! A stream subscribes first, then catches up from the store from its cursor, then
//! takes what the hub hands it, skipping ids it already sent: nothing committed
//! after the subscription can be missed, nothing is sent twice. Ids are handed out
//! in commit order (one writer at a time on either store), so reading "after the
//! last dispatched id" never skips a row. A stream whose channel is full (a slow
//! client) is dropped from the hub and catches up from the store again.

use crate::service::Broker;
use firedoor_core::api::EventView;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Events a stream may have waiting before it is dropped to catch up from the store.
pub const STREAM_BUFFER: usize = 256;
/// Rows read per query.
const BATCH: i64 = 1000;

#[derive(Default)]
pub struct Hub {
    subscribers: Mutex<Subscribers>,
}

#[derive(Default)]
struct Subscribers {
    next: u64,
    by_user: HashMap<String, Vec<(u64, mpsc::Sender<EventView>)>>,
}

/// One open stream's place in the hub; leaves it when dropped.
pub struct Subscription {
    pub rx: mpsc::Receiver<EventView>,
    id: u64,
    user: String,
    hub: Arc<Hub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut s = self
            .hub
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(v) = s.by_user.get_mut(&self.user) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                s.by_user.remove(&self.user);
            }
        }
    }
}

impl Hub {
    /// Subscribes a stream of `user`.
    pub fn subscribe(self: &Arc<Self>, user: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let mut s = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        s.next += 1;
        let id = s.next;
        s.by_user
            .entry(user.to_string())
            .or_default()
            .push((id, tx));
        Subscription {
            rx,
            id,
            user: user.to_string(),
            hub: self.clone(),
        }
    }

    /// Hands one event to `recipient`'s streams; a full channel drops that stream
    /// (it catches up from the store).
    fn dispatch(&self, recipient: &str, e: &EventView) {
        let mut s = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = s.by_user.get_mut(recipient) {
            v.retain(|(_, tx)| tx.try_send(e.clone()).is_ok());
            if v.is_empty() {
                s.by_user.remove(recipient);
            }
        }
    }

    fn wants(&self, recipient: &str) -> bool {
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_user
            .contains_key(recipient)
    }
}

/// The reader: from `start` (the last id at start), every time events were
/// committed, reads the new rows and dispatches them, until `stop`.
pub async fn run(broker: Arc<Broker>, start: i64, mut stop: watch::Receiver<bool>) {
    let mut changes = broker.events.subscribe();
    let mut last = start;
    loop {
        changes.mark_unchanged();
        loop {
            match broker.store.events().all_after(last, BATCH).await {
                Ok(rows) => {
                    let n = rows.len() as i64;
                    for (id, recipient, body) in rows {
                        last = id;
                        if !broker.fanout.wants(&recipient) {
                            continue;
                        }
                        match serde_json::from_str::<EventView>(&body) {
                            Ok(mut e) => {
                                e.id = id;
                                broker.fanout.dispatch(&recipient, &e);
                            }
                            Err(e) => {
                                tracing::error!(event = id, error = %e, "unreadable stored event")
                            }
                        }
                    }
                    if n < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading new events; retrying");
                    break;
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            // A missed wake-up (or a read that failed) is made up for here.
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64) -> EventView {
        EventView {
            id,
            incident_id: None,
            kind: "grant_active".into(),
            at: chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap_or_default(),
            request_id: None,
            grant_id: None,
            bundle: None,
            actor: None,
            message: String::new(),
        }
    }

    #[tokio::test]
    async fn events_reach_only_their_recipients_streams_and_a_full_stream_is_dropped() {
        let hub = Arc::new(Hub::default());
        let mut alice1 = hub.subscribe("alice");
        let mut alice2 = hub.subscribe("alice");
        let mut bob = hub.subscribe("bob");
        assert!(hub.wants("alice") && hub.wants("bob") && !hub.wants("carol"));
        hub.dispatch("alice", &event(1));
        assert_eq!(alice1.rx.recv().await.map(|e| e.id), Some(1));
        assert_eq!(alice2.rx.recv().await.map(|e| e.id), Some(1));
        assert!(bob.rx.try_recv().is_err(), "bob hears nothing of alice's");

        // alice2 stops reading: once its buffer is full it is dropped from the hub
        // (its stream then catches up from the store); alice1 keeps getting events.
        for id in 2..=(STREAM_BUFFER as i64 + 2) {
            hub.dispatch("alice", &event(id));
            assert_eq!(alice1.rx.recv().await.map(|e| e.id), Some(id));
        }
        let mut got = 0;
        while let Some(e) = alice2.rx.recv().await {
            got += 1;
            assert_eq!(e.id, got + 1, "in order, none twice");
        }
        assert_eq!(got as usize, STREAM_BUFFER, "what fitted, then the end");

        drop(alice1);
        drop(alice2);
        assert!(!hub.wants("alice"), "a dropped stream leaves the hub");
        drop(bob);
        assert!(!hub.wants("bob"));
    }
}
