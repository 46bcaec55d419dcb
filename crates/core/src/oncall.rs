//! On-call schedules: who is on call for a schedule at a given time, and until when.
//!
//! A schedule is declared in the policy (`[oncall.NAME]`): one or more layers, each a
//! rotation of users with a first handoff, a shift length and optionally a window of
//! days and hours it covers, all in the schedule's time zone. Overrides (someone
//! covers for a while) come from the store. At a time `now`:
//!
//! 1. an override covering `now` decides (the one that started last, if several);
//! 2. otherwise the highest layer (the last written) that covers `now` decides;
//! 3. otherwise nobody is on call.
//!
//! Shifts of whole days hand off at the same local time every time, across daylight
//! saving changes; shorter shifts are counted in elapsed time. Everything here takes
//! the time as a parameter; nothing reads a clock.
//!
//! A schedule may instead be synced from an on-call provider (PagerDuty, Opsgenie;
//! [`SyncSpec`]): the broker fetches who is on call over the next days, maps the
//! provider's people to Firedoor users by the policy's `users` table and keeps the
//! result ([`Synced`]) in its store. Step 2 then reads those shifts instead of
//! layers: everyone whose shift covers `now` is on call (a provider may have several
//! at once), and nobody past the end of what was fetched. Overrides apply on top,
//! as they do for a declared schedule.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A declared schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub title: String,
    /// The IANA time zone handoffs and windows are local times in.
    pub tz: Tz,
    /// Lowest priority first: a later layer covers an earlier one where it applies.
    /// Empty for a synced schedule.
    pub layers: Vec<Layer>,
    /// Where a synced schedule comes from (`None`: declared by its layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncSpec>,
    /// A synced schedule's shifts as last fetched: not policy but data, which the
    /// broker attaches from its store before asking who is on call ([`Schedule::with_synced`]).
    /// `None` for a synced schedule never fetched: nobody is on call for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<Synced>,
}

/// An on-call provider a schedule is synced from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Pagerduty,
    Opsgenie,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Pagerduty => "pagerduty",
            ProviderKind::Opsgenie => "opsgenie",
        }
    }
    /// The provider's API when the policy names none.
    pub fn default_api_url(self) -> &'static str {
        match self {
            ProviderKind::Pagerduty => "https://api.pagerduty.com",
            ProviderKind::Opsgenie => "https://api.opsgenie.com",
        }
    }
}

/// How a synced schedule is fetched, and whose is whose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSpec {
    pub provider: ProviderKind,
    /// The provider's schedule: its id, or (Opsgenie) its name if `by_name`.
    pub schedule: String,
    #[serde(default)]
    pub by_name: bool,
    /// Base URL of the provider's API, without a trailing slash.
    pub api_url: String,
    /// The environment variable that holds the API token (never the token).
    pub token_env: String,
    /// How often the shifts are fetched again.
    pub refresh_secs: i64,
    /// Provider user (email, lowercase) -> Firedoor user. Nobody else is anybody.
    pub users: BTreeMap<String, String>,
}

/// Fetched shifts are kept for this far ahead; past it a schedule whose provider
/// could not be reached since has nobody on call.
pub const SYNC_WINDOW_SECS: i64 = 7 * 86_400;
/// Shortest and longest refresh interval of a synced schedule, and the default.
pub const SYNC_REFRESH_RANGE: (i64, i64) = (60, 86_400);
pub const DEFAULT_SYNC_REFRESH_SECS: i64 = 300;

/// One stretch of time a provider says someone is on call, as the provider said it
/// (before mapping to Firedoor users). A missing start or end is open (PagerDuty:
/// someone always on call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderShift {
    /// The provider's email (or user name) of the person, or their id when the
    /// provider gave no email.
    pub who: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// What a provider said for a window `[from, until)`, as the broker keeps it: the
/// provider's people, not yet mapped, so a change of the policy's `users` table
/// takes effect at once, not at the next read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    pub shifts: Vec<ProviderShift>,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A Firedoor user on call from `start` until `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    pub user: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// What a synced schedule's provider said, mapped to Firedoor users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    /// Sorted by start, then user; no two alike.
    pub shifts: Vec<Shift>,
    /// How far what was fetched reaches: after it nothing is known, so nobody is on
    /// call, and a change at or after it is not a known change.
    pub known_until: DateTime<Utc>,
}

impl SyncSpec {
    /// Which provider schedule this is: a cache read from another (the policy
    /// changed) is not this one's.
    pub fn source(&self) -> String {
        format!(
            "{} {} {}:{}",
            self.provider.as_str(),
            self.api_url,
            if self.by_name { "name" } else { "id" },
            self.schedule
        )
    }

    /// Maps what the provider said to Firedoor users. Returns the shifts and the
    /// provider users who map to nobody (sorted, once each): they are nobody in
    /// Firedoor, never an error.
    pub fn map(&self, fetched: &Fetched) -> (Synced, Vec<String>) {
        let (shifts, from, known_until) = (&fetched.shifts, fetched.from, fetched.until);
        let mut out = BTreeSet::new();
        let mut unmapped = BTreeSet::new();
        for p in shifts {
            let start = p.start.unwrap_or(from).max(from);
            let end = p.end.unwrap_or(known_until).min(known_until);
            if end <= start {
                continue;
            }
            match self.users.get(&p.who.trim().to_ascii_lowercase()) {
                Some(user) => {
                    out.insert((start, user.clone(), end));
                }
                None => {
                    unmapped.insert(p.who.trim().to_string());
                }
            }
        }
        (
            Synced {
                shifts: out
                    .into_iter()
                    .map(|(start, user, end)| Shift { user, start, end })
                    .collect(),
                known_until,
            },
            unmapped.into_iter().collect(),
        )
    }
}

/// Whether a synced schedule's view is stale at `now`: its last attempt failed,
/// or it has not been fetched for three refresh intervals (the worker is not
/// getting to it), or never.
pub fn sync_is_stale(
    spec: &SyncSpec,
    fetched_at: Option<DateTime<Utc>>,
    last_attempt_failed: bool,
    now: DateTime<Utc>,
) -> bool {
    last_attempt_failed
        || fetched_at.is_none_or(|t| (now - t).num_seconds() > 3 * spec.refresh_secs)
}

/// How long a synced schedule waits before trying again after `failures` failed
/// attempts in a row: 30 s, doubling, never longer than its refresh interval.
pub fn sync_retry_after_secs(spec: &SyncSpec, failures: i64) -> i64 {
    let exp = failures.clamp(1, 16) - 1;
    (30_i64 << exp).min(spec.refresh_secs).max(1)
}

/// One rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// In rotation order; the first is on call from `start`.
    pub users: Vec<String>,
    /// The first handoff, local time in the schedule's zone.
    pub start: NaiveDateTime,
    /// Shift length in seconds.
    pub shift_secs: i64,
    /// Which local days and hours the layer covers (all of the time if none).
    pub window: Option<Window>,
}

/// Local days and hours a layer covers: on each of `days`, from `from` until `to`
/// (`to` at or before `from` runs past midnight into the next day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// 0 = Monday … 6 = Sunday.
    pub days: BTreeSet<u32>,
    pub from: NaiveTime,
    pub to: NaiveTime,
}

impl Window {
    /// Whether the local `day` (0 = Monday) and `time` fall inside the window.
    pub fn contains(&self, day: u32, time: NaiveTime) -> bool {
        if self.from < self.to {
            self.days.contains(&day) && time >= self.from && time < self.to
        } else {
            // Past midnight: the evening of a listed day, or the morning after one.
            (self.days.contains(&day) && time >= self.from)
                || (self.days.contains(&((day + 6) % 7)) && time < self.to)
        }
    }
}

/// Someone covers a schedule from `starts_at` until `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub id: String,
    pub schedule: String,
    pub user: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Who is on call now, and until when it stays so (`None`: no change within
/// [`HORIZON_DAYS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCall {
    pub user: String,
    pub until: Option<DateTime<Utc>>,
    /// Whether an override put them there.
    pub by_override: bool,
}

/// How far ahead [`Schedule::on_call`] looks for the next change.
pub const HORIZON_DAYS: i64 = 90;

/// Local time to UTC: an ambiguous time (clocks go back) is its first occurrence, a
/// time that does not exist (clocks go forward) is the moment the gap ends.
fn to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut t = local;
    for _ in 0..4 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += Duration::minutes(30);
    }
    // No zone has a gap over two hours; fall back to reading it as UTC.
    Utc.from_utc_datetime(&local)
}

impl Layer {
    fn whole_days(&self) -> Option<i64> {
        (self.shift_secs % 86_400 == 0).then_some(self.shift_secs / 86_400)
    }

    /// When shift `k` begins (shift 0 at `start`).
    fn boundary(&self, tz: Tz, k: i64) -> DateTime<Utc> {
        match self.whole_days() {
            Some(days) => to_utc(tz, self.start + Duration::days(k * days)),
            None => to_utc(tz, self.start) + Duration::seconds(k * self.shift_secs),
        }
    }

    /// The shift running at `t`, if the rotation has started.
    fn shift_at(&self, tz: Tz, t: DateTime<Utc>) -> Option<i64> {
        let first = self.boundary(tz, 0);
        if t < first || self.users.is_empty() || self.shift_secs <= 0 {
            return None;
        }
        let mut k = (t - first).num_seconds() / self.shift_secs;
        while k > 0 && self.boundary(tz, k) > t {
            k -= 1;
        }
        while self.boundary(tz, k + 1) <= t {
            k += 1;
        }
        Some(k)
    }

    fn covers(&self, tz: Tz, t: DateTime<Utc>) -> bool {
        let Some(w) = &self.window else { return true };
        let local = t.with_timezone(&tz).naive_local();
        w.contains(local.weekday().num_days_from_monday(), local.time())
    }

    fn user_at(&self, tz: Tz, t: DateTime<Utc>) -> Option<&str> {
        if !self.covers(tz, t) {
            return None;
        }
        let k = self.shift_at(tz, t)?;
        let n = self.users.len() as i64;
        Some(self.users[k.rem_euclid(n) as usize].as_str())
    }

    /// Times after `t` (within a few days) at which this layer may change.
    fn edges_after(&self, tz: Tz, t: DateTime<Utc>, out: &mut Vec<DateTime<Utc>>) {
        match self.shift_at(tz, t) {
            Some(k) => out.push(self.boundary(tz, k + 1)),
            None => out.push(self.boundary(tz, 0)),
        }
        if let Some(w) = &self.window {
            let today: NaiveDate = t.with_timezone(&tz).date_naive();
            for d in 0..9 {
                let date = today + Duration::days(d);
                for time in [w.from, w.to] {
                    out.push(to_utc(tz, date.and_time(time)));
                }
            }
        }
    }
}

impl Schedule {
    /// Who is on call at `now`, from the layers and `overrides` (any schedule's;
    /// only this one's count), and until when.
    /// (For a synced schedule with several people on call at once, the first of
    /// them; see [`Schedule::on_call_all`].)
    pub fn on_call(&self, overrides: &[Override], now: DateTime<Utc>) -> Option<OnCall> {
        self.on_call_all(overrides, now).into_iter().next()
    }

    /// Everyone on call at `now` (a declared schedule has at most one; a synced one
    /// as many as its provider says), each with until when.
    pub fn on_call_all(&self, overrides: &[Override], now: DateTime<Utc>) -> Vec<OnCall> {
        self.who_all(overrides, now)
            .into_iter()
            .map(|(user, by_override)| OnCall {
                until: self.next_change(overrides, now, &user, by_override),
                user,
                by_override,
            })
            .collect()
    }

    /// The synced schedule's shifts fetched, attached (the policy's copy has none).
    pub fn with_synced(&self, synced: Option<Synced>) -> Schedule {
        Schedule {
            synced,
            ..self.clone()
        }
    }

    /// Everyone on call at `t`, each with whether an override put them there.
    fn who_all(&self, overrides: &[Override], t: DateTime<Utc>) -> Vec<(String, bool)> {
        let covering = overrides
            .iter()
            .filter(|o| o.schedule == self.name && o.starts_at <= t && t < o.ends_at)
            .max_by_key(|o| (o.starts_at, o.id.clone()));
        if let Some(o) = covering {
            return vec![(o.user.clone(), true)];
        }
        if self.sync.is_some() {
            let Some(synced) = &self.synced else {
                return Vec::new();
            };
            let mut seen = BTreeSet::new();
            return synced
                .shifts
                .iter()
                .filter(|s| s.start <= t && t < s.end && t < synced.known_until)
                .filter(|s| seen.insert(s.user.clone()))
                .map(|s| (s.user.clone(), false))
                .collect();
        }
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.user_at(self.tz, t))
            .map(|u| vec![(u.to_string(), false)])
            .unwrap_or_default()
    }

    fn next_change(
        &self,
        overrides: &[Override],
        now: DateTime<Utc>,
        user: &str,
        by_override: bool,
    ) -> Option<DateTime<Utc>> {
        // A synced schedule knows nothing past what was fetched: a change there is
        // not known (`None`), not the moment the cache runs out.
        let horizon = match (&self.sync, &self.synced) {
            (Some(_), Some(s)) => s.known_until - Duration::seconds(1),
            (Some(_), None) => now,
            _ => now + Duration::days(HORIZON_DAYS),
        };
        let mut t = now;
        // Each step moves to the next edge of a layer or an override; a rotation
        // where the same person follows themselves takes several steps.
        for _ in 0..2_000 {
            let mut edges = Vec::new();
            for l in &self.layers {
                l.edges_after(self.tz, t, &mut edges);
            }
            if let Some(synced) = &self.synced {
                for sh in &synced.shifts {
                    edges.push(sh.start);
                    edges.push(sh.end);
                }
            }
            for o in overrides.iter().filter(|o| o.schedule == self.name) {
                edges.push(o.starts_at);
                edges.push(o.ends_at);
            }
            let next = edges.into_iter().filter(|e| *e > t).min()?;
            if next > horizon {
                return None;
            }
            if self
                .who_all(overrides, next)
                .iter()
                .any(|(u, o)| u == user && *o == by_override)
            {
                t = next;
            } else {
                return Some(next);
            }
        }
        None
    }
}

/// The longest an override may run.
pub const MAX_OVERRIDE_SECS: i64 = 90 * 86_400;
/// How far ahead an override may start.
pub const MAX_OVERRIDE_LEAD_SECS: i64 = 365 * 86_400;

/// An override as asked for, checked: the schedule exists, the times make sense
/// at `now`, the reason is clean text. Returns the cleaned reason.
pub fn check_override(
    schedules: &std::collections::BTreeMap<String, Schedule>,
    schedule: &str,
    user: &str,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<String>, crate::RuleError> {
    use crate::{ErrorCode, RuleError};
    let bad = |m: String| RuleError::new(ErrorCode::InvalidRequest, m);
    if !schedules.contains_key(schedule) {
        return Err(RuleError::new(
            ErrorCode::NotFound,
            if crate::policy::valid_name(schedule) {
                format!("no on-call schedule named '{schedule}' in the policy")
            } else {
                "no such on-call schedule: schedule names are 1-64 of a-z, 0-9, '-' and '_'"
                    .to_string()
            },
        ));
    }
    if !crate::policy::valid_name(user) {
        return Err(bad(
            "user: names are 1-64 of a-z, 0-9, '-' and '_'".to_string()
        ));
    }
    if ends_at <= starts_at {
        return Err(bad("ends_at must be after starts_at".to_string()));
    }
    if ends_at <= now {
        return Err(bad(
            "ends_at is in the past: the override would never apply".to_string(),
        ));
    }
    if (ends_at - starts_at).num_seconds() > MAX_OVERRIDE_SECS {
        return Err(bad(format!(
            "an override runs at most {}",
            crate::duration::format_duration(MAX_OVERRIDE_SECS)
        )));
    }
    if (starts_at - now).num_seconds() > MAX_OVERRIDE_LEAD_SECS {
        return Err(bad(format!(
            "an override starts at most {} ahead",
            crate::duration::format_duration(MAX_OVERRIDE_LEAD_SECS)
        )));
    }
    crate::lifecycle::clean_text(reason, false, "reason", ErrorCode::InvalidRequest)
}

/// Each user's schedules at `now`: who is on call for what.
pub fn roster<'a>(
    schedules: impl IntoIterator<Item = &'a Schedule>,
    overrides: &[Override],
    now: DateTime<Utc>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by_user: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for s in schedules {
        for (user, _) in s.who_all(overrides, now) {
            by_user.entry(user).or_default().push(s.name.clone());
        }
    }
    by_user
}

/// Parses "mon", "tue", … "sun" (any case) to 0 = Monday … 6 = Sunday.
pub fn parse_day(s: &str) -> Option<u32> {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let s = s.trim().to_ascii_lowercase();
    days.iter()
        .position(|d| s == *d || (s.len() > 3 && d.starts_with(&s[..3]) && is_day_name(&s)))
        .map(|i| i as u32)
}

fn is_day_name(s: &str) -> bool {
    [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .contains(&s)
}

/// Parses "08:00-20:00" (24-hour local times).
pub fn parse_hours(s: &str) -> Option<(NaiveTime, NaiveTime)> {
    let (a, b) = s.split_once('-')?;
    let t = |x: &str| NaiveTime::parse_from_str(x.trim(), "%H:%M").ok();
    let (from, to) = (t(a)?, t(b)?);
    (from != to).then_some((from, to))
}

/// The schedules a person is on call for at `now`, with until when.
pub fn on_call_for<'a>(
    schedules: impl IntoIterator<Item = &'a Schedule>,
    overrides: &[Override],
    user: &str,
    now: DateTime<Utc>,
) -> Vec<(String, OnCall)> {
    schedules
        .into_iter()
        .filter_map(|s| {
            let oc = s
                .on_call_all(overrides, now)
                .into_iter()
                .find(|oc| oc.user == user)?;
            Some((s.name.clone(), oc))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekly(tz: &str, users: &[&str], start: &str) -> Schedule {
        Schedule {
            name: "payments".into(),
            title: "Payments".into(),
            tz: tz.parse().unwrap(),
            layers: vec![Layer {
                users: users.iter().map(|u| u.to_string()).collect(),
                start: local(start),
                shift_secs: 7 * 86_400,
                window: None,
            }],
            sync: None,
            synced: None,
        }
    }

    #[test]
    fn a_weekly_rotation_hands_off_at_the_local_time_across_daylight_saving() {
        // Berlin: CET (UTC+1) until 2026-03-29, CEST (UTC+2) after.
        let s = weekly("Europe/Berlin", &["alice", "bob"], "2026-03-16T09:00");
        // Monday 16 March 09:00 CET = 08:00 UTC: alice.
        let oc = s.on_call(&[], utc("2026-03-16T08:00:00Z")).unwrap();
        assert_eq!(oc.user, "alice");
        assert_eq!(oc.until, Some(utc("2026-03-23T08:00:00Z")));
        // One second before the handoff: still alice; at it: bob.
        assert_eq!(
            s.on_call(&[], utc("2026-03-23T07:59:59Z")).unwrap().user,
            "alice"
        );
        let bob = s.on_call(&[], utc("2026-03-23T08:00:00Z")).unwrap();
        assert_eq!(bob.user, "bob");
        // The next handoff is 09:00 CEST = 07:00 UTC: a week minus an hour.
        assert_eq!(bob.until, Some(utc("2026-03-30T07:00:00Z")));
        assert_eq!(
            s.on_call(&[], utc("2026-03-30T07:00:00Z")).unwrap().user,
            "alice"
        );
        // Before the first handoff nobody is on call.
        assert_eq!(s.on_call(&[], utc("2026-03-16T07:59:59Z")), None);
    }

    #[test]
    fn a_higher_layer_covers_its_window_and_the_lower_one_the_rest() {
        let mut s = weekly("UTC", &["alice"], "2026-01-05T00:00");
        s.layers.push(Layer {
            users: vec!["nightowl".into()],
            start: local("2026-01-05T00:00"),
            shift_secs: 86_400,
            // Weeknights 20:00 until 08:00 the next morning.
            window: Some(Window {
                days: (0..5).collect(),
                from: NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
                to: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            }),
        });
        // Wednesday 7 January 2026.
        let day = s.on_call(&[], utc("2026-01-07T12:00:00Z")).unwrap();
        assert_eq!(day.user, "alice");
        assert_eq!(day.until, Some(utc("2026-01-07T20:00:00Z")));
        let night = s.on_call(&[], utc("2026-01-07T23:00:00Z")).unwrap();
        assert_eq!(night.user, "nightowl");
        assert_eq!(night.until, Some(utc("2026-01-08T08:00:00Z")));
        // Friday night runs into Saturday morning; Saturday night is not covered.
        assert_eq!(
            s.on_call(&[], utc("2026-01-10T03:00:00Z")).unwrap().user,
            "nightowl"
        );
        assert_eq!(
            s.on_call(&[], utc("2026-01-10T23:00:00Z")).unwrap().user,
            "alice"
        );
    }

    #[test]
    fn an_override_wins_while_it_lasts_and_the_latest_of_several() {
        let s = weekly("UTC", &["alice", "bob"], "2026-01-05T09:00");
        let o = |id: &str, user: &str, from: &str, to: &str| Override {
            id: id.into(),
            schedule: "payments".into(),
            user: user.into(),
            starts_at: utc(from),
            ends_at: utc(to),
        };
        let overrides = vec![
            o(
                "o1",
                "carol",
                "2026-01-06T00:00:00Z",
                "2026-01-07T00:00:00Z",
            ),
            o("o2", "dave", "2026-01-06T12:00:00Z", "2026-01-06T14:00:00Z"),
            // Another schedule's override changes nothing here.
            Override {
                schedule: "other".into(),
                ..o("o3", "eve", "2026-01-06T00:00:00Z", "2026-01-09T00:00:00Z")
            },
        ];
        let at = |t: &str| s.on_call(&overrides, utc(t)).unwrap();
        assert_eq!(at("2026-01-05T23:00:00Z").user, "alice");
        assert_eq!(
            at("2026-01-05T23:00:00Z").until,
            Some(utc("2026-01-06T00:00:00Z"))
        );
        let carol = at("2026-01-06T01:00:00Z");
        assert_eq!((carol.user.as_str(), carol.by_override), ("carol", true));
        assert_eq!(carol.until, Some(utc("2026-01-06T12:00:00Z")));
        assert_eq!(at("2026-01-06T13:00:00Z").user, "dave");
        assert_eq!(at("2026-01-06T14:00:00Z").user, "carol");
        assert_eq!(at("2026-01-07T00:00:00Z").user, "alice");
    }

    #[test]
    fn until_skips_handoffs_to_the_same_person() {
        // A rotation of one: alice is on call until the horizon.
        let s = weekly("UTC", &["alice"], "2026-01-05T09:00");
        assert_eq!(
            s.on_call(&[], utc("2026-01-06T00:00:00Z")).unwrap().until,
            None
        );
        let s = weekly("UTC", &["alice", "alice", "bob"], "2026-01-05T09:00");
        assert_eq!(
            s.on_call(&[], utc("2026-01-06T00:00:00Z")).unwrap().until,
            Some(utc("2026-01-19T09:00:00Z"))
        );
    }

    #[test]
    fn short_shifts_count_elapsed_time() {
        let mut s = weekly("America/New_York", &["a", "b"], "2026-03-07T20:00");
        s.layers[0].shift_secs = 12 * 3600;
        // 20:00 EST = 01:00 UTC on 8 March; DST starts at 02:00 local that night.
        assert_eq!(
            s.on_call(&[], utc("2026-03-08T01:00:00Z")).unwrap().user,
            "a"
        );
        let b = s.on_call(&[], utc("2026-03-08T13:00:00Z")).unwrap();
        assert_eq!(b.user, "b");
        assert_eq!(b.until, Some(utc("2026-03-09T01:00:00Z")));
    }

    fn synced(shifts: &[(&str, &str, &str)], known_until: &str) -> Schedule {
        Schedule {
            name: "payments".into(),
            title: "Payments".into(),
            tz: chrono_tz::UTC,
            layers: Vec::new(),
            sync: Some(SyncSpec {
                provider: ProviderKind::Pagerduty,
                schedule: "PABC123".into(),
                by_name: false,
                api_url: "https://api.pagerduty.com".into(),
                token_env: "PD_TOKEN".into(),
                refresh_secs: 300,
                users: BTreeMap::new(),
            }),
            synced: Some(Synced {
                shifts: shifts
                    .iter()
                    .map(|(u, a, b)| Shift {
                        user: u.to_string(),
                        start: utc(a),
                        end: utc(b),
                    })
                    .collect(),
                known_until: utc(known_until),
            }),
        }
    }

    #[test]
    fn a_synced_schedule_follows_its_shifts_and_knows_nothing_past_them() {
        let s = synced(
            &[
                ("alice", "2030-01-01T00:00:00Z", "2030-01-02T09:00:00Z"),
                ("bob", "2030-01-02T09:00:00Z", "2030-01-08T00:00:00Z"),
            ],
            "2030-01-08T00:00:00Z",
        );
        let a = s.on_call(&[], utc("2030-01-01T12:00:00Z")).unwrap();
        assert_eq!(a.user, "alice");
        assert_eq!(a.until, Some(utc("2030-01-02T09:00:00Z")), "the handoff");
        let b = s.on_call(&[], utc("2030-01-02T09:00:00Z")).unwrap();
        assert_eq!(b.user, "bob");
        assert_eq!(
            b.until, None,
            "bob's shift runs to the end of what was fetched: until when is not known"
        );
        assert_eq!(
            s.on_call(&[], utc("2030-01-08T00:00:00Z")),
            None,
            "past what was fetched nobody is on call"
        );
        // Never fetched: nobody.
        let never = s.with_synced(None);
        assert_eq!(never.on_call(&[], utc("2030-01-01T12:00:00Z")), None);
    }

    #[test]
    fn a_synced_schedule_may_have_several_on_call_and_overrides_still_win() {
        let s = synced(
            &[
                ("alice", "2030-01-01T00:00:00Z", "2030-01-03T00:00:00Z"),
                ("bob", "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z"),
                // The same stretch from a second escalation policy is one shift.
                ("bob", "2030-01-02T00:00:00Z", "2030-01-03T00:00:00Z"),
            ],
            "2030-01-05T00:00:00Z",
        );
        let now = utc("2030-01-01T12:00:00Z");
        let all = s.on_call_all(&[], now);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].user, "bob");
        assert_eq!(
            all[1].until,
            Some(utc("2030-01-03T00:00:00Z")),
            "back-to-back shifts of one person are one stretch"
        );
        let r = roster([&s], &[], now);
        assert_eq!(r["alice"], vec!["payments".to_string()]);
        assert_eq!(r["bob"], vec!["payments".to_string()]);
        let o = Override {
            id: "o1".into(),
            schedule: "payments".into(),
            user: "carol".into(),
            starts_at: utc("2030-01-01T10:00:00Z"),
            ends_at: utc("2030-01-01T14:00:00Z"),
        };
        let all = s.on_call_all(std::slice::from_ref(&o), now);
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].user.as_str(), all[0].by_override), ("carol", true));
        assert_eq!(
            on_call_for([&s], &[o], "alice", utc("2030-01-01T14:00:00Z"))[0].0,
            "payments"
        );
    }

    #[test]
    fn provider_shifts_map_by_email_and_unmapped_people_are_nobody() {
        let mut spec = synced(&[], "2030-01-08T00:00:00Z").sync.unwrap();
        spec.users
            .insert("alice@example.com".into(), "alice".into());
        let p = |who: &str, a: Option<&str>, b: Option<&str>| ProviderShift {
            who: who.into(),
            start: a.map(utc),
            end: b.map(utc),
        };
        let (from, to) = (utc("2030-01-01T00:00:00Z"), utc("2030-01-08T00:00:00Z"));
        let (got, unmapped) = spec.map(&Fetched {
            shifts: vec![
                p(
                    "Alice@Example.com",
                    Some("2029-12-31T00:00:00Z"),
                    Some("2030-01-02T00:00:00Z"),
                ),
                p("alice@example.com", Some("2030-01-05T00:00:00Z"), None),
                p("mallory@example.com", None, None),
                p("mallory@example.com", Some("2030-01-02T00:00:00Z"), None),
                // Entirely before the window: dropped.
                p("alice@example.com", None, Some("2029-12-01T00:00:00Z")),
            ],
            from,
            until: to,
        });
        assert_eq!(unmapped, vec!["mallory@example.com".to_string()]);
        assert_eq!(
            got.shifts,
            vec![
                Shift {
                    user: "alice".into(),
                    start: from,
                    end: utc("2030-01-02T00:00:00Z")
                },
                Shift {
                    user: "alice".into(),
                    start: utc("2030-01-05T00:00:00Z"),
                    end: to
                },
            ]
        );
    }

    #[test]
    fn sync_backs_off_and_says_when_it_is_stale() {
        let spec = synced(&[], "2030-01-08T00:00:00Z").sync.unwrap();
        assert_eq!(sync_retry_after_secs(&spec, 1), 30);
        assert_eq!(sync_retry_after_secs(&spec, 3), 120);
        assert_eq!(
            sync_retry_after_secs(&spec, 40),
            300,
            "never past the refresh"
        );
        let t = utc("2030-01-01T00:00:00Z");
        assert!(!sync_is_stale(
            &spec,
            Some(t),
            false,
            t + Duration::minutes(5)
        ));
        assert!(sync_is_stale(&spec, Some(t), true, t));
        assert!(sync_is_stale(
            &spec,
            Some(t),
            false,
            t + Duration::minutes(16)
        ));
        assert!(sync_is_stale(&spec, None, false, t));
    }

    #[test]
    fn days_and_hours_parse() {
        assert_eq!(parse_day("Mon"), Some(0));
        assert_eq!(parse_day("sunday"), Some(6));
        assert_eq!(parse_day("mo"), None);
        assert_eq!(parse_day("sundae"), None);
        assert!(parse_hours("08:00-20:00").is_some());
        assert!(parse_hours("20:00-08:00").is_some());
        assert!(parse_hours("8-20").is_none());
        assert!(parse_hours("08:00-08:00").is_none());
    }
}
