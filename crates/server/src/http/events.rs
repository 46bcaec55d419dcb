//! `/events`: the live event stream (server-sent events).

use super::{ApiError, ApiResult, AppState, Authed};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use firedoor_core::ErrorCode;
use std::convert::Infallible;

/// Server-sent events for the caller, resumable with `Last-Event-ID`. The stream
/// ends within about [`crate::access::STREAM_RECHECK`] of its token being revoked or
/// expiring, or its user being disabled (see [`crate::access::watch_store`]); a user has at most
/// [`crate::access::MAX_STREAMS_PER_USER`] streams open.
pub(super) async fn events(
    State(b): State<AppState>,
    Authed(session): Authed,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = session.principal;
    let token_hash = session.token_hash;
    let mut cursor: i64 = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "Last-Event-ID must be a non-negative integer",
                )
            })?,
    };
    let slot = b.access.open_stream(&p.name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::TooManyStreams,
            format!(
                "{} event streams are already open for {}; close one first",
                crate::access::MAX_STREAMS_PER_USER,
                p.name
            ),
        )
    })?;
    // Resuming below what was pruned: say so first (the client reloads its state),
    // then carry on after the gap.
    let pruned = b.store.events().pruned_through().await?;
    let resync = (cursor > 0 && cursor < pruned).then(|| {
        cursor = pruned;
        firedoor_core::api::EventView {
            id: pruned,
            incident_id: None,
            kind: firedoor_core::api::EventKind::Resync.as_str().into(),
            at: b.now(),
            request_id: None,
            grant_id: None,
            bundle: None,
            actor: None,
            message: "events after your last one were pruned (kept for a limited time): reload your state".into(),
        }
    });
    let mut closing = b.closing.subscribe();
    let mut access_epoch = b.access.subscribe();
    let mut recheck = tokio::time::interval(crate::access::STREAM_SAFETY_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let user = p.name;
    let counted = crate::metrics::SseClient::connect();
    let stream = async_stream::stream! {
        let _slot = slot;
        let _counted = counted;
        if let Some(e) = resync {
            let data = serde_json::to_string(&e).unwrap_or_default();
            yield Ok::<Event, Infallible>(Event::default().id(e.id.to_string()).event(e.kind.clone()).data(data));
        }
        'resume: loop {
            // Subscribe first, then catch up from the store: nothing committed after
            // this point can be missed, and what the catch-up sent is skipped below.
            let mut sub = b.fanout.subscribe(&user);
            loop {
                match b.events_after(&user, cursor, 200).await {
                    Ok(batch) => {
                        let n = batch.len();
                        for e in batch {
                            cursor = e.id;
                            let data = serde_json::to_string(&e).unwrap_or_default();
                            yield Ok::<Event, Infallible>(Event::default().id(e.id.to_string()).event(e.kind.clone()).data(data));
                        }
                        if n < 200 {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading events");
                        return;
                    }
                }
            }
            loop {
                tokio::select! {
                    next = sub.rx.recv() => match next {
                        Some(e) => {
                            if e.id > cursor {
                                cursor = e.id;
                                let data = serde_json::to_string(&e).unwrap_or_default();
                                yield Ok::<Event, Infallible>(Event::default().id(e.id.to_string()).event(e.kind.clone()).data(data));
                            }
                            continue;
                        }
                        // Dropped by the hub (this client fell behind): catch up
                        // from the store.
                        None => continue 'resume,
                    },
                    // (The guard wait_for returns is dropped inside: it is not Send.)
                    _ = async { let _ = closing.wait_for(|c| *c).await; } => return,
                    _ = access_epoch.changed() => {}
                    _ = recheck.tick() => {}
                }
                // Who may authenticate changed (here, by the CLI, on another replica,
                // by the clock), or the safety tick: revoked, expired, or the user
                // disabled ends the stream.
                match crate::auth::token_hash_valid(&b.store, &token_hash, b.now()).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "re-checking a stream's token");
                        return;
                    }
                }
            }
        }
    };
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
