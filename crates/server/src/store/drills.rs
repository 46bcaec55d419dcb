//! issue 14: break-glass drills (who was asked, who passed) and the readiness state
//! that makes an alert fire once per transition.

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct Drills<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn drills(&self) -> Drills<'_> {
        Drills(self.db())
    }
}

impl Tx {
    pub fn drills(&mut self) -> Drills<'_> {
        Drills(self.db())
    }
}

row_struct! {
    /// A drill as stored.
    #[derive(Debug, Clone)]
    pub struct DrillRow {
        pub id: String,
        pub secret: String,
        pub version: i64,
        pub nonce: String,
        /// `manual` or `schedule`.
        pub kind: String,
        pub started_by: String,
        pub started_at: Ts,
        pub deadline: Ts,
        pub closed_at: Option<Ts>,
    }
}

row_struct! {
    /// One device a drill asked, with its device's name (empty if it is gone).
    #[derive(Debug, Clone)]
    pub struct DrillDeviceRow {
        pub drill_id: String,
        pub device_id: String,
        pub user_name: String,
        pub device_name: String,
        pub passed_at: Option<Ts>,
        pub failures: i64,
        pub last_failure_at: Option<Ts>,
    }
}

macro_rules! drill_query {
    ($rest:literal) => {
        concat!(
            "SELECT id, secret, version, nonce, kind, started_by, started_at, deadline, closed_at FROM drills",
            $rest
        )
    };
}

macro_rules! drill_device_query {
    ($rest:literal) => {
        concat!(
            "SELECT x.drill_id, x.device_id, x.user_name, COALESCE(d.name, '') AS device_name, x.passed_at, x.failures, x.last_failure_at
             FROM drill_devices x LEFT JOIN devices d ON d.id = x.device_id",
            $rest
        )
    };
}

impl Drills<'_> {
    pub async fn insert(&mut self, d: &DrillRow) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO drills (id, secret, version, nonce, kind, started_by, started_at, deadline)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &d.id,
            &d.secret,
            d.version,
            &d.nonce,
            &d.kind,
            &d.started_by,
            d.started_at,
            d.deadline
        )?;
        Ok(())
    }

    /// Asks `device_id` (of `user`) in drill `drill_id`.
    pub async fn ask(&mut self, drill_id: &str, device_id: &str, user: &str) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO drill_devices (drill_id, device_id, user_name) VALUES ($1, $2, $3)",
            drill_id,
            device_id,
            user
        )?;
        Ok(())
    }

    pub async fn get(&mut self, id: &str) -> Result<Option<DrillRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            DrillRow,
            drill_query!(" WHERE id = $1"),
            id
        )?)
    }

    /// The most recent drills, newest first.
    pub async fn recent(&mut self, limit: i64) -> Result<Vec<DrillRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            DrillRow,
            drill_query!(" ORDER BY started_at DESC, id LIMIT $1"),
            limit
        )?)
    }

    /// The newest drill of `secret`, open or closed.
    pub async fn latest(&mut self, secret: &str) -> Result<Option<DrillRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            DrillRow,
            drill_query!(" WHERE secret = $1 ORDER BY started_at DESC, id DESC LIMIT 1"),
            secret
        )?)
    }

    /// The open drill of `secret`, if there is one.
    pub async fn open_of(&mut self, secret: &str) -> Result<Option<DrillRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            DrillRow,
            drill_query!(
                " WHERE secret = $1 AND closed_at IS NULL ORDER BY started_at DESC LIMIT 1"
            ),
            secret
        )?)
    }

    /// Every device's entry in the newest closed drill of `secret` that asked it.
    pub async fn last_closed_entries(&mut self, secret: &str) -> Result<Vec<DrillDeviceRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            DrillDeviceRow,
            drill_device_query!(
                " JOIN drills r ON r.id = x.drill_id
                 WHERE r.secret = $1 AND r.closed_at IS NOT NULL AND r.started_at = (
                   SELECT max(r2.started_at) FROM drills r2 JOIN drill_devices x2 ON x2.drill_id = r2.id
                   WHERE r2.secret = r.secret AND r2.closed_at IS NOT NULL AND x2.device_id = x.device_id)"
            ),
            secret
        )?)
    }

    /// The devices drill `id` asked, by user and device.
    pub async fn devices(&mut self, id: &str) -> Result<Vec<DrillDeviceRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            DrillDeviceRow,
            drill_device_query!(" WHERE x.drill_id = $1 ORDER BY x.user_name, x.device_id"),
            id
        )?)
    }

    /// One device's entry in a drill.
    pub async fn entry(&mut self, id: &str, device_id: &str) -> Result<Option<DrillDeviceRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            DrillDeviceRow,
            drill_device_query!(" WHERE x.drill_id = $1 AND x.device_id = $2"),
            id,
            device_id
        )?)
    }

    /// Open drills (before their deadline) that asked `device_id` and that it has
    /// not passed yet.
    pub async fn pending_for(&mut self, device_id: &str, now: Ts) -> Result<Vec<DrillRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            DrillRow,
            "SELECT r.id, r.secret, r.version, r.nonce, r.kind, r.started_by, r.started_at, r.deadline, r.closed_at
             FROM drills r JOIN drill_devices x ON x.drill_id = r.id
             WHERE x.device_id = $1 AND x.passed_at IS NULL AND r.closed_at IS NULL AND r.deadline > $2
             ORDER BY r.deadline, r.id",
            device_id,
            now
        )?)
    }

    /// Marks a device passed (once); false if it had passed already.
    pub async fn pass(&mut self, id: &str, device_id: &str, now: Ts) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE drill_devices SET passed_at = $1 WHERE drill_id = $2 AND device_id = $3 AND passed_at IS NULL",
            now,
            id,
            device_id
        )? == 1)
    }

    /// Counts a wrong answer of a device; returns its wrong answers in this drill.
    pub async fn fail(&mut self, id: &str, device_id: &str, now: Ts) -> Result<i64> {
        exec!(
            self.0,
            "UPDATE drill_devices SET failures = failures + 1, last_failure_at = $1 WHERE drill_id = $2 AND device_id = $3",
            now,
            id,
            device_id
        )?;
        Ok(scalar!(
            self.0,
            fetch_one,
            i64,
            "SELECT failures FROM drill_devices WHERE drill_id = $1 AND device_id = $2",
            id,
            device_id
        )?)
    }

    /// Open drills whose deadline has passed.
    pub async fn due_to_close(&mut self, now: Ts) -> Result<Vec<DrillRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            DrillRow,
            drill_query!(" WHERE closed_at IS NULL AND deadline <= $1 ORDER BY deadline LIMIT 100"),
            now
        )?)
    }

    /// Closes a drill (once); false if it was closed already.
    pub async fn close(&mut self, id: &str, now: Ts) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE drills SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL",
            now,
            id
        )? == 1)
    }

    /// Whether `secret` was below its required ready holders at the last check.
    pub async fn below(&mut self, secret: &str) -> Result<Option<bool>> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            i64,
            "SELECT below FROM readiness_state WHERE secret = $1",
            secret
        )?
        .map(|b| b != 0))
    }

    /// Records whether `secret` is below now (a transition, or the first check).
    pub async fn set_below(
        &mut self,
        secret: &str,
        below: bool,
        ready: i64,
        now: Ts,
    ) -> Result<()> {
        let below = i64::from(below);
        exec!(
            self.0,
            "INSERT INTO readiness_state (secret, below, since, ready) VALUES ($1, $2, $3, $4)
             ON CONFLICT (secret) DO UPDATE SET below = excluded.below, since = excluded.since, ready = excluded.ready",
            secret,
            below,
            now,
            ready
        )?;
        Ok(())
    }
}

impl Drills<'_> {
    /// Every envelope of an active device: (secret, device id, user, device name,
    /// version, not after).
    pub async fn envelopes_held(
        &mut self,
    ) -> Result<Vec<(String, String, String, String, i64, Ts)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, String, String, String, i64, Ts),
            "SELECT e.secret, e.device_id, d.user_name, d.name, e.version, e.not_after
             FROM envelopes e JOIN devices d ON d.id = e.device_id
             WHERE d.revoked_at IS NULL ORDER BY e.secret, d.user_name, e.device_id"
        )?)
    }
}
