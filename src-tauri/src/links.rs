//! `firedoor://` links reaching the app: as the argument of the first launch, or
//! handed over by a second launch (the single-instance plugin forwards its
//! arguments over D-Bus to the deep-link plugin, then that process exits).
//!
//! Each link is parsed by `firedoor_core::links` (strict) and sent to the UI as one
//! typed event, `firedoor://link`: a valid link, or why it was refused. Links that
//! come before the UI listens wait here until it says it is ready. A link only ever
//! fills in a form or shows a view: nothing here calls the broker.

pub use firedoor_core::links::LinkEvent;
use firedoor_core::links::SCHEME;
use std::sync::Mutex;
use tauri::{AppHandle, Emitter, Manager};

/// The event the UI listens to.
pub const EVENT: &str = "firedoor://link";
/// Links kept while the UI is not listening yet (the oldest go first).
const MAX_WAITING: usize = 8;

#[derive(Default)]
pub struct Links {
    inner: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    ui_ready: bool,
    waiting: Vec<LinkEvent>,
}

impl Links {
    /// The UI listens now: returns what waited, and sends the rest as events.
    pub fn ready(&self) -> Vec<LinkEvent> {
        let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        i.ui_ready = true;
        std::mem::take(&mut i.waiting)
    }

    /// Keeps the event for the UI; returns it back when the UI listens already
    /// (the caller emits it).
    fn hold(&self, ev: LinkEvent) -> Option<LinkEvent> {
        let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if i.ui_ready {
            return Some(ev);
        }
        if i.waiting.len() >= MAX_WAITING {
            i.waiting.remove(0);
        }
        i.waiting.push(ev);
        None
    }
}

/// Whether a command-line argument is meant as a link (even one that is not a
/// valid URL, so it is reported rather than silently dropped).
pub fn looks_like_link(arg: &str) -> bool {
    arg.len() > SCHEME.len() + 1
        && arg
            .get(..SCHEME.len() + 1)
            .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{SCHEME}:")))
}

/// Hands one link to the UI and brings the window forward.
pub fn deliver(app: &AppHandle, text: &str) {
    let ev = LinkEvent::from_text(text);
    match &ev {
        LinkEvent::Link { .. } => tracing::info!("link opened"),
        LinkEvent::Invalid { message } => tracing::warn!(%message, "link refused"),
    }
    crate::show_main(app);
    let Some(links) = app.try_state::<Links>() else {
        return;
    };
    if let Some(ev) = links.hold(ev) {
        let _ = app.emit(EVENT, ev);
    }
}

/// A link argument the deep-link plugin did not take because it is not a valid
/// URL (it takes a single argument that parses as a URL of our scheme): reported
/// to the user as a refused link.
pub fn unparsable_link_arg(args: &[String]) -> Option<&str> {
    match args {
        [_, arg] if looks_like_link(arg) && tauri::Url::parse(arg).is_err() => Some(arg),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn links_wait_for_the_ui_then_go_as_events() {
        let l = Links::default();
        assert!(l
            .hold(LinkEvent::from_text("firedoor://request/a"))
            .is_none());
        for _ in 0..20 {
            l.hold(LinkEvent::from_text("firedoor://nope"));
        }
        let waiting = l.ready();
        assert_eq!(waiting.len(), MAX_WAITING, "bounded");
        assert!(
            matches!(waiting[0], LinkEvent::Invalid { .. }),
            "oldest dropped"
        );
        assert!(l.ready().is_empty(), "handed over once");
        assert!(l
            .hold(LinkEvent::from_text("firedoor://request/a"))
            .is_some());
    }

    #[test]
    fn events_are_typed_for_the_ui() {
        let v = serde_json::to_value(LinkEvent::from_text(
            "firedoor://request/prod-db?reason=lag&ticket=OPS-1",
        ))
        .unwrap();
        assert_eq!(v["kind"], "link");
        assert_eq!(v["link"]["kind"], "request");
        assert_eq!(v["link"]["reason"], "lag");
        let v = serde_json::to_value(LinkEvent::from_text("firedoor://approve/123")).unwrap();
        assert_eq!(v["kind"], "invalid");
        assert!(v["message"].as_str().unwrap().contains("not a request id"));
    }

    #[test]
    fn link_arguments_are_recognised_even_when_broken() {
        assert!(looks_like_link("firedoor://x"));
        assert!(looks_like_link("FireDoor:x"));
        assert!(!looks_like_link("--minimized"));
        assert!(!looks_like_link("firedoor"));
        assert!(!looks_like_link("firedoör"));
        let args = |a: &str| vec!["/usr/bin/firedoor".to_string(), a.to_string()];
        assert_eq!(
            unparsable_link_arg(&args("firedoor://[bad")),
            Some("firedoor://[bad")
        );
        assert_eq!(unparsable_link_arg(&args("firedoor://request/a")), None);
        assert_eq!(unparsable_link_arg(&args("--demo")), None);
    }
}
