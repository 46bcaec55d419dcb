//! Reports after an incident (`firedoor-server report ...`, `GET /reports/...`):
//! the timeline of an incident, a grant or a break-glass unlock read from the audit
//! log, and the check of a report against the log. The lines and their rendering
//! are in [`firedoor_core::report`]; this module finds what a report follows (the
//! grant's request in the store, an incident by its id or its source's id) and
//! reads the log.

use crate::clock::ts;
use crate::error::{Error, Result};
use crate::store::Store;
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use firedoor_core::access::{check_admin, Actor, AdminAction};
use firedoor_core::audit::AuditRecord;
use firedoor_core::report::{
    check_against_log, notes_for, select, Report, ReportHead, ReportKind, ReportLine,
    ReportProblem, ReportVerified, Scope, REPORT_FORMAT,
};
use firedoor_core::ErrorCode;

/// Longest id accepted (ids are short; this bounds what is echoed back).
const MAX_ID: usize = 200;

fn check_id(id: &str) -> Result<&str> {
    let id = id.trim();
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        return Err(Error::rule(
            ErrorCode::InvalidRequest,
            format!("give the id to report on (1 to {MAX_ID} characters, no control characters)"),
        ));
    }
    Ok(id)
}

/// What a report of `kind` on `id` starts from, found in the store and in `log`
/// (the records the report covers). Unknown ids are "not found".
async fn seeds(store: &Store, log: &[AuditRecord], kind: ReportKind, id: &str) -> Result<Scope> {
    let id = check_id(id)?;
    let mut scope = Scope::default();
    match kind {
        ReportKind::Grant => {
            let g = store
                .grants()
                .load(id)
                .await?
                .ok_or_else(|| Error::not_found("grant"))?;
            scope.grants.insert(g.id);
            scope.requests.insert(g.request_id);
        }
        ReportKind::Incident => {
            for r in log.iter().filter(|r| r.action == "incident_opened") {
                let external = serde_json::from_str::<serde_json::Value>(&r.details)
                    .ok()
                    .and_then(|d| d.get("external_id")?.as_str().map(str::to_string));
                if r.subject == id || external.as_deref() == Some(id) {
                    scope.incidents.insert(r.subject.clone());
                    scope.names.insert(r.subject.clone());
                    scope.names.extend(external);
                }
            }
            if scope.incidents.is_empty() {
                return Err(Error::not_found("incident"));
            }
            scope.names.insert(id.to_string());
        }
        ReportKind::Unlock => {
            let seq: i64 = id.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                Error::rule(
                    ErrorCode::InvalidRequest,
                    "an unlock is named by the sequence number of its audit record (a positive integer)",
                )
            })?;
            let is_unlock = log.get((seq - 1) as usize).is_some_and(|r| {
                r.seq == seq
                    && matches!(
                        r.action.as_str(),
                        "break_glass_offline_unlock" | "break_glass_online_unlock"
                    )
            });
            if !is_unlock {
                return Err(Error::not_found("break-glass unlock record"));
            }
            scope.unlocks.insert(seq);
        }
    }
    Ok(scope)
}

/// The lines of a report of `kind` on `id` over `log` (records 1..=n, in order).
pub async fn lines(
    store: &Store,
    log: &[AuditRecord],
    kind: ReportKind,
    id: &str,
) -> Result<(Vec<ReportLine>, Scope)> {
    let scope = seeds(store, log, kind, id).await?;
    Ok(select(log, scope))
}

/// The whole audit log, in order.
pub async fn log(store: &Store) -> Result<Vec<AuditRecord>> {
    crate::audit::records(store, 0, i64::MAX).await
}

/// Builds the report of `kind` on `id` from the log as it is now.
pub async fn build(
    store: &Store,
    kind: ReportKind,
    id: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Report> {
    let log = log(store).await?;
    build_over(store, &log, kind, id, by, now).await
}

/// As [`build`], over records already read.
pub async fn build_over(
    store: &Store,
    log: &[AuditRecord],
    kind: ReportKind,
    id: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Report> {
    let (lines, scope) = lines(store, log, kind, id).await?;
    let head = match log.last() {
        Some(r) => ReportHead {
            seq: r.seq,
            hash: r.hash.clone(),
            signature: r.signature.clone(),
        },
        None => return Err(Error::not_found("audit record (the log is empty)")),
    };
    Ok(Report {
        format: REPORT_FORMAT.to_string(),
        kind,
        id: id.trim().to_string(),
        generated_at: ts(now),
        generated_by: by.to_string(),
        head,
        notes: notes_for(kind, &lines),
        scope,
        lines,
    })
}

/// Checks `report` against the log in `store` with the broker's public key `key`:
/// the outer error is a failure to read; the inner one names what does not match.
pub async fn verify(
    store: &Store,
    key: &VerifyingKey,
    report: &Report,
) -> Result<std::result::Result<ReportVerified, ReportProblem>> {
    let log = log(store).await?;
    let upto = usize::try_from(report.head.seq.max(0))
        .unwrap_or(0)
        .min(log.len());
    // The same report, rebuilt from the log up to the report's head.
    let rebuilt = match lines(store, &log[..upto], report.kind, &report.id).await {
        Ok((l, _)) => l,
        Err(Error::Rule(r)) => {
            return Ok(Err(ReportProblem(format!(
                "the report's {} {} cannot be found in the audit log: {}",
                report.kind.as_str(),
                report.id,
                r.message
            ))))
        }
        Err(e) => return Err(e),
    };
    Ok(check_against_log(report, &log, key, &rebuilt))
}

impl crate::service::Broker {
    /// A report for `actor` (admins, the CLI: it shows audit records).
    pub async fn report(&self, actor: &Actor, kind: ReportKind, id: &str) -> Result<Report> {
        check_admin(actor, AdminAction::ReadAudit)?;
        build(&self.store, kind, id, &actor.name(), self.now()).await
    }

    /// Checks a report against this broker's log (admins).
    pub async fn verify_report(
        &self,
        actor: &Actor,
        report: &Report,
    ) -> Result<std::result::Result<ReportVerified, ReportProblem>> {
        check_admin(actor, AdminAction::ReadAudit)?;
        let key = self.store.signer().ok_or_else(|| {
            Error::Config("no broker key is loaded: cannot check signatures".into())
        })?;
        verify(&self.store, &key.verifying_key(), report).await
    }
}
