//! `firedoor://` links: what a link in a chat message, an incident tool or a web
//! page may ask the desktop app to show.
//!
//! - `firedoor://request/BUNDLE?reason=…&ticket=…&incident=…` opens the request
//!   form for BUNDLE, filled in;
//! - `firedoor://approve/REQ` opens that request in the approvals view;
//! - `firedoor://open/requests/REQ`, `firedoor://open/grants/GRT` and
//!   `firedoor://open/incidents/INC` show that item (the links chat messages have
//!   carried since before the app understood links).
//!
//! Any web page can fire such a link, so a link is untrusted input: it is parsed
//! strictly here (names and ids as the rest of core defines them, bounded texts,
//! unknown actions and parameters refused), and it only ever fills in or shows
//! something. Submitting, approving or denying is always the user's own click.

use crate::policy::valid_name;
use crate::{GrantId, RequestId};
use serde::Serialize;
use std::fmt;

/// The scheme the desktop app registers.
pub const SCHEME: &str = "firedoor";
/// Longest link accepted, in bytes (before decoding).
pub const MAX_LINK_BYTES: usize = 4096;
/// Longest reason (the request's justification) a link may carry, in characters.
pub const MAX_LINK_REASON_CHARS: usize = 1000;
/// Longest ticket reference a link may carry, in characters.
pub const MAX_LINK_TICKET_CHARS: usize = 200;
/// Longest incident id a link may carry, in characters.
pub const MAX_LINK_INCIDENT_CHARS: usize = 100;

/// A view a `firedoor://open/…` link shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum OpenView {
    /// My requests (`open/requests/REQ`).
    Requests,
    /// My access (`open/grants/GRT`).
    Access,
    /// The bundles an incident opened (`open/incidents/INC`).
    Bundles,
}

/// A parsed, valid link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Link {
    /// Fill in the request form for `bundle`; the user reviews and sends it.
    Request {
        bundle: String,
        reason: Option<String>,
        ticket: Option<String>,
        incident: Option<String>,
    },
    /// Show this request among the approvals; the user decides.
    Approve { request: RequestId },
    /// Show a view, with one item flashed.
    Open { view: OpenView, id: Option<String> },
}

/// What the app's UI gets for each link that reached it: the link, or why it was
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkEvent {
    Link { link: Link },
    Invalid { message: String },
}

impl LinkEvent {
    pub fn from_text(text: &str) -> LinkEvent {
        match Link::parse(text) {
            Ok(link) => LinkEvent::Link { link },
            Err(e) => LinkEvent::Invalid {
                message: e.to_string(),
            },
        }
    }
}

/// Why a link was refused, in words for the user. Never repeats the whole link (it
/// may be long or crafted); at most a short, cleaned piece of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkError(String);

impl LinkError {
    fn new(m: impl Into<String>) -> Self {
        LinkError(m.into())
    }
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LinkError {}

/// A short, printable piece of untrusted text for a message.
fn shown(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(40)
        .collect::<String>();
    if s.chars().count() > 40 {
        format!("\"{clean}…\"")
    } else {
        format!("\"{clean}\"")
    }
}

/// Percent-decodes one component (`+` is a space in a query value).
fn decode(s: &str, plus_is_space: bool) -> Result<String, LinkError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| LinkError::new("The link has a broken %-escape."))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| LinkError::new("The link is not valid UTF-8 text."))
}

/// Percent-encodes a component: everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A bounded free text from a link: trimmed, `None` when blank, refused when
/// longer than `max` characters or holding control characters other than line
/// breaks and tabs.
fn text(v: &str, what: &str, max: usize) -> Result<Option<String>, LinkError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.chars().count() > max {
        return Err(LinkError::new(format!(
            "The link's {what} is longer than {max} characters."
        )));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(LinkError::new(format!(
            "The link's {what} contains control characters."
        )));
    }
    Ok(Some(v.to_string()))
}

/// An incident id (`inc_…` from the broker, or a source's reference): 1 to
/// [`MAX_LINK_INCIDENT_CHARS`] of letters, digits, `-`, `_`, `.` and `:`.
fn incident_id(v: &str) -> Result<String, LinkError> {
    let ok = !v.is_empty()
        && v.chars().count() <= MAX_LINK_INCIDENT_CHARS
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(LinkError::new(format!(
            "The link's incident {} is not an incident id.",
            shown(v)
        )))
    }
}

fn request_id(v: &str) -> Result<RequestId, LinkError> {
    v.parse::<RequestId>().map_err(|_| {
        LinkError::new(format!(
            "The link's request {} is not a request id (req_…).",
            shown(v)
        ))
    })
}

impl Link {
    /// Parses a link. Strict: the scheme, one known action with exactly its path,
    /// only its known query parameters, each at most once, and no fragment.
    pub fn parse(link: &str) -> Result<Link, LinkError> {
        if link.len() > MAX_LINK_BYTES {
            return Err(LinkError::new(format!(
                "The link is longer than {MAX_LINK_BYTES} bytes."
            )));
        }
        let rest = link
            .split_once("://")
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(SCHEME))
            .map(|(_, rest)| rest)
            .ok_or_else(|| LinkError::new("Not a firedoor:// link."))?;
        if rest.contains('#') {
            return Err(LinkError::new("The link has a fragment (#…)."));
        }
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let segs: Vec<String> = path
            .split('/')
            .map(|s| decode(s, false))
            .collect::<Result<_, _>>()?;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let params = parse_query(query)?;
        let no_params = |what: &str| -> Result<(), LinkError> {
            match params.first() {
                None => Ok(()),
                Some((k, _)) => Err(LinkError::new(format!(
                    "A {what} link takes no parameter ({} given).",
                    shown(k)
                ))),
            }
        };
        match segs.as_slice() {
            ["request", bundle] => {
                if !valid_name(bundle) {
                    return Err(LinkError::new(format!(
                        "The link's bundle {} is not a bundle name.",
                        shown(bundle)
                    )));
                }
                let (mut reason, mut ticket, mut incident) = (None, None, None);
                for (k, v) in &params {
                    let slot = match k.as_str() {
                        "reason" => &mut reason,
                        "ticket" => &mut ticket,
                        "incident" => &mut incident,
                        _ => {
                            return Err(LinkError::new(format!(
                                "A request link takes reason, ticket and incident, not {}.",
                                shown(k)
                            )))
                        }
                    };
                    if slot.replace(v.as_str()).is_some() {
                        return Err(LinkError::new(format!(
                            "The link gives {} twice.",
                            shown(k)
                        )));
                    }
                }
                Ok(Link::Request {
                    bundle: bundle.to_string(),
                    reason: reason
                        .map(|v| text(v, "reason", MAX_LINK_REASON_CHARS))
                        .transpose()?
                        .flatten(),
                    ticket: ticket
                        .map(|v| text(v, "ticket", MAX_LINK_TICKET_CHARS))
                        .transpose()?
                        .flatten(),
                    incident: incident
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(incident_id)
                        .transpose()?,
                })
            }
            ["approve", id] => {
                no_params("approve")?;
                Ok(Link::Approve {
                    request: request_id(id)?,
                })
            }
            ["open", "requests", id] => {
                no_params("open")?;
                Ok(Link::Open {
                    view: OpenView::Requests,
                    id: Some(request_id(id)?.to_string()),
                })
            }
            ["open", "grants", id] => {
                no_params("open")?;
                let g = id.parse::<GrantId>().map_err(|_| {
                    LinkError::new(format!(
                        "The link's grant {} is not a grant id (grt_…).",
                        shown(id)
                    ))
                })?;
                Ok(Link::Open {
                    view: OpenView::Access,
                    id: Some(g.to_string()),
                })
            }
            ["open", "incidents", id] => {
                no_params("open")?;
                incident_id(id)?;
                Ok(Link::Open {
                    view: OpenView::Bundles,
                    id: None,
                })
            }
            [action, ..] => Err(LinkError::new(format!(
                "Firedoor does not know this link ({}): it opens request/BUNDLE, approve/REQUEST and open/… links.",
                shown(action)
            ))),
            [] => Err(LinkError::new("The link is empty.")),
        }
    }

    /// The link as text (parameters percent-encoded), which [`Link::parse`] reads
    /// back to the same link.
    pub fn to_url(&self) -> String {
        match self {
            Link::Request {
                bundle,
                reason,
                ticket,
                incident,
            } => {
                let mut url = format!("{SCHEME}://request/{}", encode(bundle));
                let params: Vec<String> = [
                    ("reason", reason),
                    ("ticket", ticket),
                    ("incident", incident),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
                .collect();
                if !params.is_empty() {
                    url.push('?');
                    url.push_str(&params.join("&"));
                }
                url
            }
            Link::Approve { request } => format!("{SCHEME}://approve/{request}"),
            Link::Open { view, id } => {
                let what = match view {
                    OpenView::Requests => "requests",
                    OpenView::Access => "grants",
                    OpenView::Bundles => "incidents",
                };
                match id {
                    Some(id) => format!("{SCHEME}://open/{what}/{}", encode(id)),
                    None => format!("{SCHEME}://open/{what}"),
                }
            }
        }
    }
}

/// The link that opens request `id` for its approvers.
pub fn approve_link(id: &RequestId) -> String {
    Link::Approve { request: *id }.to_url()
}

fn parse_query(query: Option<&str>) -> Result<Vec<(String, String)>, LinkError> {
    let Some(q) = query else {
        return Ok(Vec::new());
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k, true)?, decode(v, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req() -> RequestId {
        "req_6f1c2a0b9d8e4f7a8b6c5d4e3f2a1b0c".parse().unwrap()
    }

    #[test]
    fn a_request_link_fills_in_bundle_reason_ticket_and_incident() {
        let l = Link::parse(
            "firedoor://request/prod-db?reason=Replication+lag%20on%20db-2&ticket=OPS-12&incident=inc_7",
        )
        .unwrap();
        assert_eq!(
            l,
            Link::Request {
                bundle: "prod-db".into(),
                reason: Some("Replication lag on db-2".into()),
                ticket: Some("OPS-12".into()),
                incident: Some("inc_7".into()),
            }
        );
        // Only the bundle is needed; blank values are no values.
        assert_eq!(
            Link::parse("firedoor://request/prod-db?reason=").unwrap(),
            Link::Request {
                bundle: "prod-db".into(),
                reason: None,
                ticket: None,
                incident: None
            }
        );
        // Unicode text survives the round trip.
        let l = Link::Request {
            bundle: "prod-db".into(),
            reason: Some("Lag & \"locks\" — zürich?#".into()),
            ticket: None,
            incident: Some("inc_1".into()),
        };
        assert_eq!(Link::parse(&l.to_url()).unwrap(), l);
    }

    #[test]
    fn an_approve_link_names_one_request() {
        let url = approve_link(&req());
        assert_eq!(url, format!("firedoor://approve/{}", req()));
        assert_eq!(Link::parse(&url).unwrap(), Link::Approve { request: req() });
        // The scheme is case-insensitive, as URL schemes are.
        assert!(Link::parse(&format!("FIREDOOR://approve/{}", req())).is_ok());
    }

    #[test]
    fn the_links_chat_messages_carry_show_their_item() {
        assert_eq!(
            Link::parse(&format!("firedoor://open/requests/{}", req())).unwrap(),
            Link::Open {
                view: OpenView::Requests,
                id: Some(req().to_string())
            }
        );
        let g = GrantId::new();
        assert_eq!(
            Link::parse(&format!("firedoor://open/grants/{g}")).unwrap(),
            Link::Open {
                view: OpenView::Access,
                id: Some(g.to_string())
            }
        );
        assert_eq!(
            Link::parse("firedoor://open/incidents/inc_3").unwrap(),
            Link::Open {
                view: OpenView::Bundles,
                id: None
            }
        );
    }

    #[test]
    fn bad_links_are_refused_with_a_readable_reason() {
        let long = "x".repeat(MAX_LINK_REASON_CHARS + 1);
        let cases: Vec<(String, &str)> = vec![
            (
                "https://evil.example/request/prod-db".into(),
                "Not a firedoor",
            ),
            ("firedoor:request/prod-db".into(), "Not a firedoor"),
            ("firedoor://delete/prod-db".into(), "does not know"),
            ("firedoor://approve/req_1/deny".into(), "does not know"),
            ("firedoor://approve/req_1".into(), "not a request id"),
            (
                format!("firedoor://approve/{}?deny=1", req()),
                "takes no parameter",
            ),
            (
                format!("firedoor://approve/{}?confirm=yes", req()),
                "takes no parameter",
            ),
            (
                "firedoor://approve/grt_6f1c2a0b9d8e4f7a8b6c5d4e3f2a1b0c".into(),
                "not a request id",
            ),
            ("firedoor://request/Prod DB".into(), "not a bundle name"),
            ("firedoor://request/..%2Fetc".into(), "not a bundle name"),
            (
                "firedoor://request/prod-db?submit=1".into(),
                "takes reason, ticket and incident",
            ),
            (
                "firedoor://request/prod-db?reason=a&reason=b".into(),
                "twice",
            ),
            (
                format!("firedoor://request/prod-db?reason={long}"),
                "longer than 1000",
            ),
            (
                format!("firedoor://request/prod-db?ticket={}", "t".repeat(201)),
                "longer than 200",
            ),
            (
                "firedoor://request/prod-db?reason=a%00b".into(),
                "control characters",
            ),
            ("firedoor://request/prod-db?reason=%E2%28".into(), "UTF-8"),
            ("firedoor://request/prod-db?reason=%zz".into(), "%-escape"),
            (
                "firedoor://request/prod-db?incident=inc%201".into(),
                "not an incident id",
            ),
            ("firedoor://request/prod-db#x".into(), "fragment"),
            ("firedoor://request/prod-db/".into(), "does not know"),
            ("firedoor://open/secrets/x".into(), "does not know"),
            (
                format!("firedoor://request/prod-db?reason={}", "a".repeat(5000)),
                "longer than 4096",
            ),
        ];
        for (link, want) in cases {
            let err = Link::parse(&link).expect_err(&link);
            assert!(err.message().contains(want), "{link}: {err}");
            assert!(err.message().len() < 200, "{link}: short message");
        }
    }

    #[test]
    fn a_link_serialises_as_the_ui_reads_it() {
        let v = serde_json::to_value(Link::Approve { request: req() }).unwrap();
        assert_eq!(v["kind"], "approve");
        assert_eq!(v["request"], req().to_string());
        let v =
            serde_json::to_value(Link::parse("firedoor://request/a?ticket=T-1").unwrap()).unwrap();
        assert_eq!(v["kind"], "request");
        assert_eq!(v["bundle"], "a");
        assert_eq!(v["ticket"], "T-1");
        assert!(v["reason"].is_null());
    }
}
