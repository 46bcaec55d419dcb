//! Access and extension requests, and the approvers' decisions on them.

use super::{Db, Store, Ts, Tx};
use crate::error::Result;
use firedoor_core::lifecycle::RequestState;

pub struct Requests<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn requests(&self) -> Requests<'_> {
        Requests(self.db())
    }
}

impl Tx {
    pub fn requests(&mut self) -> Requests<'_> {
        Requests(self.db())
    }
}

/// `SELECT <every request column> FROM requests <rest>`.
macro_rules! request_query {
    ($rest:literal) => {
        concat!("SELECT ", request_columns!(), " FROM requests", $rest)
    };
}

/// The requests `$inner` selects (every column), each with its decisions: one row per
/// decision, or one with no decision; in `$order`, which ends with the request id
/// so that each request's rows are together, then by when each decision was made
/// (see [`grouped`]).
macro_rules! with_decisions {
    ($inner:expr, $order:literal) => {
        concat!(
            "SELECT ",
            request_columns!(),
            ", d.by_user AS d_by, d.decision AS d_decision, d.comment AS d_comment, d.at AS d_at
             FROM (",
            $inner,
            ") requests LEFT JOIN decisions d ON d.request_id = requests.id ORDER BY ",
            $order,
            ", d.at, d.by_user"
        )
    };
}

/// Every request column, by name.
macro_rules! request_columns {
    () => {
        "id, kind, bundle, flow, requester, state, duration_secs, justification, ticket, created_at, pending_until, approvals_needed, grant_id, error, incident_id, requested_by, stage, stage_since, reminded_stage"
    };
}

row_struct! {
    #[derive(Debug, Clone)]
    pub struct RequestRow {
        pub id: String,
        pub kind: String,
        pub bundle: String,
        pub flow: String,
        pub requester: String,
        pub state: String,
        pub duration_secs: i64,
        pub justification: Option<String>,
        pub ticket: Option<String>,
        pub created_at: Ts,
        pub pending_until: Ts,
        pub approvals_needed: i64,
        pub grant_id: Option<String>,
        pub error: Option<String>,
        /// The incident it was made for.
        pub incident_id: Option<String>,
        /// Who asked, when someone asked on the requester's behalf.
        pub requested_by: Option<String>,
        /// The approval stage it reached (see `firedoor_core::approval`).
        pub stage: i64,
        /// Since when it is at `stage` (`None`: since it was created).
        pub stage_since: Option<Ts>,
        /// The stage whose approvers were last reminded.
        pub reminded_stage: Option<i64>,
    }
}

/// A decision on a request: (by_user, decision, comment, at).
pub type DecisionRow = (String, String, Option<String>, Ts);

/// A request and one of its decisions, or none (a request with no decision yet):
/// one row of [`Requests::load_with_decisions`].
#[derive(sqlx::FromRow)]
pub struct RequestDecisionRow {
    #[sqlx(flatten)]
    request: RequestRow,
    d_by: Option<String>,
    d_decision: Option<String>,
    d_comment: Option<String>,
    d_at: Option<Ts>,
}

impl super::lite::FromLite for RequestDecisionRow {
    fn from_lite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(RequestDecisionRow {
            request: RequestRow::from_lite(row)?,
            d_by: row.get("d_by")?,
            d_decision: row.get("d_decision")?,
            d_comment: row.get("d_comment")?,
            d_at: row.get("d_at")?,
        })
    }
}

/// Rows of a [`with_decisions!`] query, one entry per request, in their order.
fn grouped(rows: Vec<RequestDecisionRow>) -> Vec<(RequestRow, Vec<DecisionRow>)> {
    let mut out: Vec<(RequestRow, Vec<DecisionRow>)> = Vec::new();
    for r in rows {
        let decision = match (r.d_by, r.d_decision, r.d_at) {
            (Some(by), Some(decision), Some(at)) => Some((by, decision, r.d_comment, at)),
            _ => None,
        };
        match out.last_mut() {
            Some((last, decisions)) if last.id == r.request.id => decisions.extend(decision),
            _ => out.push((r.request, decision.into_iter().collect())),
        }
    }
    out
}

/// A request about to be stored.
pub struct NewRequest<'a> {
    pub id: &'a str,
    /// `access` or `extension`.
    pub kind: &'a str,
    pub bundle: &'a str,
    pub flow: &'a str,
    pub requester: &'a str,
    pub state: RequestState,
    pub duration_secs: i64,
    pub justification: Option<&'a str>,
    pub ticket: Option<&'a str>,
    pub created_at: Ts,
    pub pending_until: Ts,
    pub approvals_needed: i64,
    /// The grant an extension request would extend.
    pub grant_id: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub body_hash: Option<&'a str>,
    /// The incident it is made for.
    pub incident_id: Option<&'a str>,
    /// Who asked, on the requester's behalf.
    pub requested_by: Option<&'a str>,
    /// The approval stage it starts at.
    pub stage: i64,
}

impl Requests<'_> {
    /// Reads a request by id.
    pub async fn load(&mut self, id: &str) -> Result<Option<RequestRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            RequestRow,
            request_query!(" WHERE id = $1"),
            id
        )?)
    }

    /// A request and its decisions in the order they were made, in one statement (the
    /// view answered after each change reads both).
    pub async fn load_with_decisions(
        &mut self,
        id: &str,
    ) -> Result<Option<(RequestRow, Vec<DecisionRow>)>> {
        let rows = fetch!(
            self.0,
            fetch_all,
            RequestDecisionRow,
            with_decisions!(request_query!(" WHERE id = $1"), "requests.id"),
            id
        )?;
        Ok(grouped(rows).into_iter().next())
    }

    /// The (id, body_hash) of the request `requester` created with this
    /// idempotency key.
    pub async fn by_idempotency_key(
        &mut self,
        requester: &str,
        key: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (String, Option<String>),
            "SELECT id, body_hash FROM requests WHERE COALESCE(requested_by, requester) = $1 AND idempotency_key = $2",
            requester,
            key
        )?)
    }

    pub async fn insert(&mut self, r: &NewRequest<'_>) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO requests (id, kind, bundle, flow, requester, state, duration_secs, justification, ticket,
                created_at, pending_until, approvals_needed, grant_id, idempotency_key, body_hash, updated_at, incident_id,
                requested_by, stage)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            r.id,
            r.kind,
            r.bundle,
            r.flow,
            r.requester,
            r.state.as_str(),
            r.duration_secs,
            r.justification,
            r.ticket,
            r.created_at,
            r.pending_until,
            r.approvals_needed,
            r.grant_id,
            r.idempotency_key,
            r.body_hash,
            r.created_at,
            r.incident_id,
            r.requested_by,
            r.stage,
        )?;
        Ok(())
    }

    /// Records the grant an approved access request made.
    pub async fn set_grant(&mut self, id: &str, grant_id: &str, now: Ts) -> Result<()> {
        exec!(
            self.0,
            "UPDATE requests SET grant_id = $1, updated_at = $2 WHERE id = $3",
            grant_id,
            now,
            id
        )?;
        Ok(())
    }

    /// Moves a request from `from` to `to` only if it is still in `from`, keeping
    /// `error` if given; false if it was not.
    pub async fn cas_state(
        &mut self,
        id: &str,
        from: RequestState,
        to: RequestState,
        now: Ts,
        error: Option<&str>,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE requests SET state = $1, updated_at = $2, error = COALESCE($3, error) WHERE id = $4 AND state = $5",
            to.as_str(),
            now,
            error,
            id,
            from.as_str()
        )?;
        Ok(n == 1)
    }

    /// Moves a pending request from approval stage `from` to `to`; false if it is no
    /// longer pending at `from`.
    pub async fn cas_stage(&mut self, id: &str, from: i64, to: i64, now: Ts) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE requests SET stage = $1, stage_since = $2, updated_at = $3
             WHERE id = $4 AND state = 'pending' AND stage = $5",
            to,
            now,
            now,
            id,
            from
        )?;
        Ok(n == 1)
    }

    /// Marks the approvers of `stage` reminded; false if they were already, or the
    /// request moved on.
    pub async fn mark_reminded(&mut self, id: &str, stage: i64) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE requests SET reminded_stage = $1
             WHERE id = $2 AND state = 'pending' AND stage = $3
               AND (reminded_stage IS NULL OR reminded_stage < $4)",
            stage,
            id,
            stage,
            stage
        )?;
        Ok(n == 1)
    }

    /// Pending requests of the flows named, still open at `now`, oldest first: at
    /// most `limit` of each flow.
    pub async fn pending_in_flows(
        &mut self,
        flows: &[String],
        now: Ts,
        limit: i64,
    ) -> Result<Vec<RequestRow>> {
        let mut out = Vec::new();
        for flow in flows {
            let rows: Vec<RequestRow> = fetch!(
                self.0,
                fetch_all,
                RequestRow,
                request_query!(
                    " WHERE state = 'pending' AND flow = $1 AND pending_until > $2 ORDER BY created_at, id LIMIT $3"
                ),
                flow,
                now,
                limit
            )?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// `requester`'s requests (in `state` if given), newest first, with their
    /// decisions.
    pub async fn of_requester(
        &mut self,
        requester: &str,
        state: Option<RequestState>,
        limit: i64,
    ) -> Result<Vec<(RequestRow, Vec<DecisionRow>)>> {
        let state = state.map(|s| s.as_str());
        Ok(grouped(fetch!(
            self.0,
            fetch_all,
            RequestDecisionRow,
            with_decisions!(
                request_query!(
                    " WHERE (requester = $1 OR requested_by = $2) AND ($3 IS NULL OR state = $4) ORDER BY created_at DESC, id DESC LIMIT $5"
                ),
                "requests.created_at DESC, requests.id DESC"
            ),
            requester,
            requester,
            state,
            state,
            limit
        )?))
    }

    /// Pending requests still open at `now` that `user` neither made nor decided,
    /// oldest first, with their decisions.
    pub async fn awaiting_decision_by(
        &mut self,
        user: &str,
        now: Ts,
    ) -> Result<Vec<(RequestRow, Vec<DecisionRow>)>> {
        Ok(grouped(fetch!(
            self.0,
            fetch_all,
            RequestDecisionRow,
            with_decisions!(
                request_query!(
                    " r WHERE state = 'pending' AND requester != $1 AND pending_until > $2
                       AND (requested_by IS NULL OR requested_by != $3)
                       AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.request_id = r.id AND d.by_user = $4)"
                ),
                "requests.created_at, requests.id"
            ),
            user,
            now,
            user,
            user
        )?))
    }

    /// One page of every request (in `state` if given), newest first, with their
    /// decisions: at most `limit`, after `after` (the creation time and id of the
    /// previous page's last request).
    pub async fn page(
        &mut self,
        state: Option<RequestState>,
        after: Option<(Ts, &str)>,
        limit: i64,
    ) -> Result<Vec<(RequestRow, Vec<DecisionRow>)>> {
        let state = state.map(|s| s.as_str());
        // Two texts rather than one with `$n IS NULL OR (…) < (…)`: PostgreSQL's generic
        // plan keeps the row comparison an index condition only when it always applies.
        Ok(grouped(match after {
            None => fetch!(
                self.0,
                fetch_all,
                RequestDecisionRow,
                with_decisions!(
                    request_query!(
                        " WHERE ($1 IS NULL OR state = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
                    ),
                    "requests.created_at DESC, requests.id DESC"
                ),
                state,
                state,
                limit
            )?,
            Some((at, id)) => fetch!(
                self.0,
                fetch_all,
                RequestDecisionRow,
                with_decisions!(
                    request_query!(
                        " WHERE ($1 IS NULL OR state = $2) AND (created_at, id) < ($3, $4)
                          ORDER BY created_at DESC, id DESC LIMIT $5"
                    ),
                    "requests.created_at DESC, requests.id DESC"
                ),
                state,
                state,
                at,
                id,
                limit
            )?,
        }))
    }

    /// Pending requests whose deadline passed at `now`.
    pub async fn pending_past_deadline(&mut self, now: Ts, limit: i64) -> Result<Vec<RequestRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            RequestRow,
            request_query!(" WHERE state = 'pending' AND pending_until <= $1 LIMIT $2"),
            now,
            limit
        )?)
    }

    /// Records `by`'s approval (one decision per approver).
    pub async fn insert_approval(
        &mut self,
        id: &str,
        by: &str,
        comment: Option<&str>,
        now: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO decisions (request_id, by_user, decision, comment, at) VALUES ($1, $2, 'approve', $3, $4)",
            id,
            by,
            comment,
            now
        )?;
        Ok(())
    }

    /// Records `by`'s denial, replacing an earlier decision of theirs.
    pub async fn upsert_denial(
        &mut self,
        id: &str,
        by: &str,
        reason: Option<&str>,
        now: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO decisions (request_id, by_user, decision, comment, at) VALUES ($1, $2, 'deny', $3, $4)
             ON CONFLICT (request_id, by_user) DO UPDATE SET decision = 'deny', comment = excluded.comment, at = excluded.at",
            id,
            by,
            reason,
            now
        )?;
        Ok(())
    }
}
