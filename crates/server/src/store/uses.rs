//! Break-glass uses (issue 14): one row per unlock, open until classified, and
//! whether its rotation still waits for an incident (see [`crate::ops::uses`]).

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct Uses<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn uses(&self) -> Uses<'_> {
        Uses(self.db())
    }
}

impl Tx {
    pub fn uses(&mut self) -> Uses<'_> {
        Uses(self.db())
    }
}

row_struct! {
    /// A use as stored.
    #[derive(Debug, Clone)]
    pub struct UseRow {
        pub id: String,
        pub secret: String,
        pub version: i64,
        pub user_name: String,
        pub mode: String,
        pub device_id: Option<String>,
        pub seq: Option<i64>,
        pub reason: String,
        pub unlocked_at: Ts,
        pub recorded_at: Ts,
        pub incident_ref: Option<String>,
        pub incident_id: Option<String>,
        /// `drill`, `incident`, `other`; `None` while open.
        pub kind: Option<String>,
        pub note: Option<String>,
        pub classified_by: Option<String>,
        pub classified_at: Option<Ts>,
        pub rotation_waits: i64,
    }
}

macro_rules! use_query {
    ($rest:literal) => {
        concat!(
            "SELECT id, secret, version, user_name, mode, device_id, seq, reason, unlocked_at, recorded_at,
               incident_ref, incident_id, kind, note, classified_by, classified_at, rotation_waits
             FROM breakglass_uses",
            $rest
        )
    };
}

/// A new use.
pub struct NewUse<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub version: i64,
    pub user: &'a str,
    pub mode: &'a str,
    pub device_id: Option<&'a str>,
    pub seq: Option<i64>,
    pub reason: &'a str,
    pub unlocked_at: Ts,
    pub recorded_at: Ts,
    pub incident_ref: Option<&'a str>,
    pub incident_id: Option<&'a str>,
    pub rotation_waits: bool,
}

impl Uses<'_> {
    pub async fn insert(&mut self, u: &NewUse<'_>) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO breakglass_uses (id, secret, version, user_name, mode, device_id, seq, reason,
               unlocked_at, recorded_at, incident_ref, incident_id, rotation_waits)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            u.id,
            u.secret,
            u.version,
            u.user,
            u.mode,
            u.device_id,
            u.seq,
            u.reason,
            u.unlocked_at,
            u.recorded_at,
            u.incident_ref,
            u.incident_id,
            i64::from(u.rotation_waits)
        )?;
        Ok(())
    }

    pub async fn load(&mut self, id: &str) -> Result<Option<UseRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            UseRow,
            use_query!(" WHERE id = $1"),
            id
        )?)
    }

    /// The latest uses, open ones first (at most `limit`); only open ones if
    /// `open_only`.
    pub async fn recent(&mut self, open_only: bool, limit: i64) -> Result<Vec<UseRow>> {
        if open_only {
            Ok(fetch!(
                self.0,
                fetch_all,
                UseRow,
                use_query!(" WHERE kind IS NULL ORDER BY recorded_at DESC, id LIMIT $1"),
                limit
            )?)
        } else {
            Ok(fetch!(
                self.0,
                fetch_all,
                UseRow,
                use_query!(
                    " ORDER BY CASE WHEN kind IS NULL THEN 0 ELSE 1 END, recorded_at DESC, id LIMIT $1"
                ),
                limit
            )?)
        }
    }

    /// Records a classification if the use is still as the caller read it
    /// (`previous` kind); false if it changed meanwhile. An `incident`
    /// classification replaces the incident linked before (a drill or other keeps
    /// what the unlock record said, for the record).
    #[allow(clippy::too_many_arguments)]
    pub async fn classify(
        &mut self,
        id: &str,
        previous: Option<&str>,
        kind: &str,
        incident_ref: Option<&str>,
        incident_id: Option<&str>,
        note: Option<&str>,
        by: &str,
        at: Ts,
    ) -> Result<bool> {
        let n = match previous {
            None => exec!(
                self.0,
                "UPDATE breakglass_uses SET kind = $1,
                   incident_ref = CASE WHEN $1 = 'incident' THEN $2 ELSE incident_ref END,
                   incident_id = CASE WHEN $1 = 'incident' THEN $3 ELSE incident_id END,
                   note = $4, classified_by = $5, classified_at = $6
                 WHERE id = $7 AND kind IS NULL",
                kind,
                incident_ref,
                incident_id,
                note,
                by,
                at,
                id
            )?,
            Some(p) => exec!(
                self.0,
                "UPDATE breakglass_uses SET kind = $1,
                   incident_ref = CASE WHEN $1 = 'incident' THEN $2 ELSE incident_ref END,
                   incident_id = CASE WHEN $1 = 'incident' THEN $3 ELSE incident_id END,
                   note = $4, classified_by = $5, classified_at = $6
                 WHERE id = $7 AND kind = $8",
                kind,
                incident_ref,
                incident_id,
                note,
                by,
                at,
                id,
                p
            )?,
        };
        Ok(n == 1)
    }

    /// Uses whose rotation waits for an incident (at most 500).
    pub async fn waiting(&mut self) -> Result<Vec<UseRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            UseRow,
            use_query!(" WHERE rotation_waits = 1 ORDER BY recorded_at LIMIT 500")
        )?)
    }

    /// Other uses of `secret` at `version` still waiting, besides `except`.
    pub async fn others_waiting(
        &mut self,
        secret: &str,
        version: i64,
        except: &[String],
    ) -> Result<Vec<String>> {
        let ids = scalar!(
            self.0,
            fetch_all,
            String,
            "SELECT id FROM breakglass_uses WHERE rotation_waits = 1 AND secret = $1 AND version = $2",
            secret,
            version
        )?;
        Ok(ids.into_iter().filter(|i| !except.contains(i)).collect())
    }

    /// The use no longer waits.
    pub async fn stop_waiting(&mut self, id: &str) -> Result<()> {
        exec!(
            self.0,
            "UPDATE breakglass_uses SET rotation_waits = 0 WHERE id = $1",
            id
        )?;
        Ok(())
    }
}

impl Uses<'_> {
    /// The broker incident whose provider id is `external_id` (the latest one
    /// opened): (id, state).
    pub async fn incident_by_external_id(
        &mut self,
        external_id: &str,
    ) -> Result<Option<(String, String)>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (String, String),
            "SELECT id, state FROM incidents WHERE external_id = $1 ORDER BY opened_at DESC, id LIMIT 1",
            external_id
        )?)
    }
}
