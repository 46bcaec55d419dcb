//! Synced on-call schedules: the worker step that reads who is on call from
//! PagerDuty (`GET /oncalls`) or Opsgenie (`GET /v2/schedules/{id}/on-calls`) and
//! keeps it in the store ([`crate::store::oncall::SyncRow`]).
//!
//! - A schedule is due when its `next_attempt_at` has come (at the broker clock's
//!   `now`, which is all this step knows of time). Taking it is a compare-and-set on
//!   that column that also moves it a lease ahead, so among replicas sharing a store
//!   one fetches; the fetch itself is idempotent (it replaces the cache with what the
//!   provider says), so a lease that runs out mid-fetch costs a second read, nothing
//!   worse.
//! - A fetch has a deadline ([`FETCH_TIMEOUT`]). Success replaces the cache and
//!   schedules the next refresh; failure keeps the last known state, records the
//!   error (never the token) and retries with backoff
//!   ([`firedoor_core::oncall::sync_retry_after_secs`]). The audit log gets the
//!   transitions: the first failure after a success and the recovery, not every
//!   attempt.
//! - The provider's people are mapped to Firedoor users by the policy's `users`
//!   table (in core); someone unmapped is nobody, logged once per process.
//!
//! PagerDuty: the on-calls of the schedule for the next [`SYNC_WINDOW_SECS`], with
//! the users' emails (`include[]=users`), paged by offset/limit/more; handoffs inside
//! that window are known, so they happen on time even while PagerDuty is
//! unreachable. PagerDuty lists the on-calls of schedules used by an escalation
//! policy only. Opsgenie: who is on call at `now` (`flat=true`: their user names,
//! which are emails); until when is not known (the timeline endpoint is not read),
//! so they stay on call until a refresh says otherwise or the window runs out.

use crate::audit::Actor;
use crate::error::Result;
use crate::service::Broker;
use crate::store::Ts;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use firedoor_core::audit::AuditEvent;
use firedoor_core::oncall::{
    self, Fetched, ProviderKind, ProviderShift, Schedule, SyncSpec, SYNC_WINDOW_SECS,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeSet;

/// The longest one schedule's fetch (every page of it) may take.
pub const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// The longest one HTTP request may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a replica holds a schedule it is fetching (longer than a fetch).
const LEASE_SECS: i64 = 60;
/// PagerDuty's page size (its maximum) and how many pages a fetch reads at most.
const PD_PAGE: usize = 100;
const PD_MAX_PAGES: usize = 50;
/// The largest response body read.
const MAX_BODY: usize = 4 << 20;

/// One refresh pass at a time in this process (a test's pass waits for the
/// worker's), and the unmapped provider users already logged.
#[derive(Default)]
pub struct SyncTurn {
    turn: tokio::sync::Mutex<()>,
    logged_unmapped: std::sync::Mutex<BTreeSet<(String, String)>>,
}

impl Broker {
    /// Worker step: fetches the synced schedules whose refresh is due at `now`.
    pub async fn sync_on_call(&self, now: DateTime<Utc>) -> Result<()> {
        let synced: Vec<&Schedule> = self
            .policy
            .oncall
            .values()
            .filter(|s| s.sync.is_some())
            .collect();
        if synced.is_empty() {
            return Ok(());
        }
        let _turn = self.oncall_sync.turn.lock().await;
        let rows = self.store.oncall().sync_rows().await?;
        let mut due = Vec::new();
        for s in synced {
            let Some(spec) = &s.sync else { continue };
            let source = spec.source();
            match rows.iter().find(|r| r.schedule == s.name) {
                Some(r) if r.next_attempt_at.0 > now && r.source == source => continue,
                Some(_) => {}
                None => {
                    self.store
                        .oncall()
                        .ensure_sync(&s.name, &source, Ts(now))
                        .await?
                }
            }
            let lease = Ts(now + Duration::seconds(LEASE_SECS));
            if self
                .store
                .oncall()
                .claim_sync(&s.name, &source, Ts(now), lease)
                .await?
            {
                due.push((s, spec));
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        let results = futures::future::join_all(due.iter().map(|(_, spec)| async move {
            match tokio::time::timeout(FETCH_TIMEOUT, fetch(spec, now)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "{} did not answer within {} s",
                    provider_name(spec.provider),
                    FETCH_TIMEOUT.as_secs()
                )),
            }
        }))
        .await;
        for ((s, spec), res) in due.into_iter().zip(results) {
            self.record_sync(s, spec, now, res).await?;
        }
        Ok(())
    }

    async fn record_sync(
        &self,
        s: &Schedule,
        spec: &SyncSpec,
        now: DateTime<Utc>,
        res: std::result::Result<Fetched, String>,
    ) -> Result<()> {
        let provider = spec.provider.as_str().to_string();
        let mut uow = self.uow_at(now).await?;
        let prev = uow.oncall().sync_row(&s.name).await?;
        let failures = prev.as_ref().map_or(0, |r| r.failures);
        match res {
            Ok(f) => {
                let (synced, unmapped) = spec.map(&f);
                self.log_unmapped(&s.name, &unmapped);
                let next = now + Duration::seconds(spec.refresh_secs);
                uow.oncall()
                    .sync_succeeded(&s.name, &json(&f)?, Ts(now), Ts(next))
                    .await?;
                if failures > 0 {
                    uow.record(
                        &Actor::System,
                        &s.name,
                        AuditEvent::OnCallSyncRecovered {
                            provider,
                            failures,
                            stale_since: prev.and_then(|r| r.fetched_at).map(Ts::text),
                        },
                    );
                    tracing::info!(schedule = %s.name, failures, "on-call schedule synced again");
                }
                tracing::debug!(schedule = %s.name, shifts = synced.shifts.len(), "on-call schedule synced");
            }
            Err(error) => {
                let next =
                    now + Duration::seconds(oncall::sync_retry_after_secs(spec, failures + 1));
                uow.oncall()
                    .sync_failed(&s.name, &error, Ts(now), Ts(next))
                    .await?;
                if failures == 0 {
                    uow.record(
                        &Actor::System,
                        &s.name,
                        AuditEvent::OnCallSyncFailed {
                            provider,
                            error: error.clone(),
                        },
                    );
                }
                tracing::warn!(schedule = %s.name, %error, failures = failures + 1, retry_at = %Ts(next).text(),
                    "on-call schedule sync failed; its last known state stays in force");
            }
        }
        uow.commit().await
    }

    fn log_unmapped(&self, schedule: &str, unmapped: &[String]) {
        let mut logged = self
            .oncall_sync
            .logged_unmapped
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for who in unmapped {
            if logged.insert((schedule.to_string(), who.clone())) {
                tracing::warn!(schedule, provider_user = %who,
                    "on-call provider user maps to no Firedoor user (add them to the schedule's users table): they are nobody in Firedoor");
            }
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| crate::error::Error::Corrupt(format!("on-call cache: {e}")))
}

fn provider_name(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::Pagerduty => "PagerDuty",
        ProviderKind::Opsgenie => "Opsgenie",
    }
}

/// Reads what `spec`'s provider says for the window from `now`. The error is a
/// sentence for operators, without the token.
pub async fn fetch(spec: &SyncSpec, now: DateTime<Utc>) -> std::result::Result<Fetched, String> {
    let token = match std::env::var(&spec.token_env) {
        Ok(t) if !t.trim().is_empty() => SecretString::from(t.trim().to_string()),
        _ => {
            return Err(format!(
                "the environment variable {} (token_env) that holds the API token is not set",
                spec.token_env
            ))
        }
    };
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(std::time::Duration::from_secs(5))
        // The token goes to the configured API only.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("could not set up an HTTP client: {e}"))?;
    let until = now + Duration::seconds(SYNC_WINDOW_SECS);
    let res = match spec.provider {
        ProviderKind::Pagerduty => fetch_pagerduty(&client, spec, &token, now, until).await,
        ProviderKind::Opsgenie => fetch_opsgenie(&client, spec, &token, now).await,
    };
    res.map(|shifts| Fetched {
        shifts,
        from: now,
        until,
    })
    .map_err(|e| scrub(&e, token.expose_secret()))
}

/// Never lets the token through in an error, whatever a provider echoed.
fn scrub(msg: &str, token: &str) -> String {
    let msg = if token.len() >= 4 {
        msg.replace(token, "[token]")
    } else {
        msg.to_string()
    };
    msg.chars().take(500).collect()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn sensitive(v: String) -> std::result::Result<reqwest::header::HeaderValue, String> {
    let mut h = reqwest::header::HeaderValue::from_str(&v)
        .map_err(|_| "the API token holds characters an HTTP header cannot carry".to_string())?;
    h.set_sensitive(true);
    Ok(h)
}

/// Sends `req` and reads its body; a non-2xx answer is an error naming the status
/// and the provider's own message.
async fn get(
    req: reqwest::RequestBuilder,
    who: &str,
    api_url: &str,
) -> std::result::Result<Vec<u8>, String> {
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!(
                "{who} did not answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            )
        } else if e.is_connect() {
            format!("could not connect to {who} at {api_url}")
        } else {
            format!("request to {who} failed: {}", e.without_url())
        }
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading {who}'s answer failed: {}", e.without_url()))?;
    if body.len() > MAX_BODY {
        return Err(format!("{who}'s answer is larger than {MAX_BODY} bytes"));
    }
    if !status.is_success() {
        return Err(format!(
            "{who} answered {status}{}",
            provider_message(&body)
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    Ok(body.to_vec())
}

/// The message in a provider's error body: PagerDuty's `error.message` (and
/// `error.errors`), Opsgenie's `message`.
fn provider_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let pd = v.get("error").and_then(|e| {
        let m = e.get("message")?.as_str()?.to_string();
        let more: Vec<&str> = e
            .get("errors")
            .and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        Some(if more.is_empty() {
            m
        } else {
            format!("{m} ({})", more.join("; "))
        })
    });
    let m = pd.or_else(|| v.get("message")?.as_str().map(str::to_string))?;
    Some(m.chars().filter(|c| !c.is_control()).take(200).collect())
}

// ---- PagerDuty ----

#[derive(Deserialize)]
struct PdPage {
    oncalls: Vec<PdOnCall>,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct PdOnCall {
    user: Option<PdUser>,
    schedule: Option<PdRef>,
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize)]
struct PdUser {
    id: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct PdRef {
    id: Option<String>,
}

fn parse_time(s: Option<&str>, what: &str) -> std::result::Result<Option<DateTime<Utc>>, String> {
    match s {
        None => Ok(None),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| format!("an on-call's {what} '{t}' is not an RFC 3339 time")),
    }
}

/// One page of `GET /oncalls`: the schedule's shifts, how many on-calls the page
/// held, and whether more follow.
pub fn parse_pagerduty_page(
    body: &[u8],
    schedule_id: &str,
) -> std::result::Result<(Vec<ProviderShift>, usize, bool), String> {
    let page: PdPage = serde_json::from_slice(body)
        .map_err(|e| format!("PagerDuty's on-calls are not in the documented shape: {e}"))?;
    let held = page.oncalls.len();
    let mut out = Vec::new();
    for oc in page.oncalls {
        // The filter asked for this schedule; anything else is not ours.
        if oc.schedule.and_then(|s| s.id).as_deref() != Some(schedule_id) {
            continue;
        }
        let Some(user) = oc.user else { continue };
        let who = match (user.email, user.id) {
            (Some(e), _) if !e.trim().is_empty() => e,
            (_, Some(id)) => format!("pagerduty user {id} (no email)"),
            _ => continue,
        };
        out.push(ProviderShift {
            who,
            start: parse_time(oc.start.as_deref(), "start")?,
            end: parse_time(oc.end.as_deref(), "end")?,
        });
    }
    Ok((out, held, page.more))
}

async fn fetch_pagerduty(
    client: &reqwest::Client,
    spec: &SyncSpec,
    token: &SecretString,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> std::result::Result<Vec<ProviderShift>, String> {
    let url = format!("{}/oncalls", spec.api_url);
    let auth = sensitive(format!("Token token={}", token.expose_secret()))?;
    let mut out = Vec::new();
    let mut offset = 0;
    for _ in 0..PD_MAX_PAGES {
        let (off, limit) = (offset.to_string(), PD_PAGE.to_string());
        let req = client
            .get(&url)
            .query(&[
                ("schedule_ids[]", spec.schedule.as_str()),
                ("since", &rfc3339(since)),
                ("until", &rfc3339(until)),
                ("include[]", "users"),
                ("time_zone", "UTC"),
                ("limit", &limit),
                ("offset", &off),
            ])
            .header(
                reqwest::header::ACCEPT,
                "application/vnd.pagerduty+json;version=2",
            )
            .header(reqwest::header::AUTHORIZATION, auth.clone());
        let body = get(req, "PagerDuty", &spec.api_url).await?;
        let (shifts, held, more) = parse_pagerduty_page(&body, &spec.schedule)?;
        out.extend(shifts);
        if !more {
            return Ok(out);
        }
        if held == 0 {
            return Err("PagerDuty said more on-calls follow but sent none".to_string());
        }
        // The next page starts after what came (a server may send fewer than asked).
        offset += held;
    }
    Err(format!(
        "PagerDuty listed more than {} pages of on-calls for the next {} days",
        PD_MAX_PAGES,
        SYNC_WINDOW_SECS / 86_400
    ))
}

// ---- Opsgenie ----

#[derive(Deserialize)]
struct OgAnswer {
    data: OgData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OgData {
    #[serde(default)]
    on_call_recipients: Vec<String>,
}

/// `GET /v2/schedules/{id}/on-calls?flat=true`: who is on call at `at`.
pub fn parse_opsgenie(
    body: &[u8],
    at: DateTime<Utc>,
) -> std::result::Result<Vec<ProviderShift>, String> {
    let a: OgAnswer = serde_json::from_slice(body)
        .map_err(|e| format!("Opsgenie's on-calls are not in the documented shape: {e}"))?;
    Ok(a.data
        .on_call_recipients
        .into_iter()
        .filter(|r| !r.trim().is_empty())
        .map(|who| ProviderShift {
            who,
            start: Some(at),
            end: None,
        })
        .collect())
}

async fn fetch_opsgenie(
    client: &reqwest::Client,
    spec: &SyncSpec,
    token: &SecretString,
    now: DateTime<Utc>,
) -> std::result::Result<Vec<ProviderShift>, String> {
    let mut url = reqwest::Url::parse(&spec.api_url)
        .map_err(|_| format!("api_url '{}' is not a URL", spec.api_url))?;
    url.path_segments_mut()
        .map_err(|_| format!("api_url '{}' cannot have a path", spec.api_url))?
        .pop_if_empty()
        .extend(["v2", "schedules", spec.schedule.as_str(), "on-calls"]);
    let auth = sensitive(format!("GenieKey {}", token.expose_secret()))?;
    let req = client
        .get(url)
        .query(&[
            (
                "scheduleIdentifierType",
                if spec.by_name { "name" } else { "id" },
            ),
            ("flat", "true"),
            ("date", &rfc3339(now)),
        ])
        .header(reqwest::header::AUTHORIZATION, auth);
    let body = get(req, "Opsgenie", &spec.api_url).await?;
    parse_opsgenie(&body, now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pagerduty_pages_read_the_documented_shape() {
        let body = serde_json::json!({
            "oncalls": [
                {
                    "escalation_policy": { "id": "PT20YPA", "type": "escalation_policy_reference" },
                    "escalation_level": 1,
                    "schedule": { "id": "PI7DH85", "type": "schedule_reference" },
                    "user": { "id": "PXPGF42", "type": "user", "name": "Alice", "email": "alice@example.com" },
                    "start": "2030-03-18T09:00:00+01:00",
                    "end": "2030-03-25T09:00:00+01:00"
                },
                {
                    "escalation_level": 2,
                    "schedule": { "id": "POTHER1", "type": "schedule_reference" },
                    "user": { "id": "PZZZ", "type": "user", "email": "zed@example.com" },
                    "start": null, "end": null
                },
                {
                    "escalation_level": 1,
                    "schedule": { "id": "PI7DH85", "type": "schedule_reference" },
                    "user": { "id": "PNOEMAIL", "type": "user_reference", "summary": "Nobody" },
                    "start": null, "end": null
                }
            ],
            "limit": 100, "offset": 0, "more": true, "total": null
        });
        let (shifts, held, more) =
            parse_pagerduty_page(body.to_string().as_bytes(), "PI7DH85").unwrap();
        assert!(more);
        assert_eq!(held, 3);
        assert_eq!(shifts.len(), 2, "another schedule's on-call is not ours");
        assert_eq!(shifts[0].who, "alice@example.com");
        assert_eq!(
            shifts[0].start.unwrap().to_rfc3339(),
            "2030-03-18T08:00:00+00:00"
        );
        assert_eq!(shifts[1].who, "pagerduty user PNOEMAIL (no email)");
        assert_eq!((shifts[1].start, shifts[1].end), (None, None));
        assert!(parse_pagerduty_page(b"{\"users\": []}", "PI7DH85").is_err());
    }

    #[test]
    fn opsgenie_reads_the_flat_recipients() {
        let at = DateTime::parse_from_rfc3339("2030-03-18T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = serde_json::json!({
            "data": {
                "_parent": { "id": "d875alp4-9b4e-4219-alp3-0c26936d18de", "name": "ScheduleName", "enabled": true },
                "onCallRecipients": ["user4@opsgenie.com", "user3@opsgenie.com"]
            },
            "took": 0.199, "requestId": "4a2alpab-c2ac-4e32-8da0-8a7abcfe8f0c"
        });
        let shifts = parse_opsgenie(body.to_string().as_bytes(), at).unwrap();
        assert_eq!(shifts.len(), 2);
        assert_eq!(shifts[0].who, "user4@opsgenie.com");
        assert_eq!((shifts[0].start, shifts[0].end), (Some(at), None));
    }

    #[test]
    fn errors_carry_the_providers_message_and_never_the_token() {
        assert_eq!(
            provider_message(br#"{"error":{"message":"Unauthorized","code":2006}}"#).as_deref(),
            Some("Unauthorized")
        );
        assert_eq!(
            provider_message(br#"{"message":"Could not authenticate","took":0.0,"requestId":"x"}"#)
                .as_deref(),
            Some("Could not authenticate")
        );
        assert_eq!(
            scrub("bad token u+secret-token-123 given", "u+secret-token-123"),
            "bad token [token] given"
        );
    }
}
