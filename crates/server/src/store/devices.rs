//! Enrolled break-glass devices and the unlock records they uploaded (see
//! [`crate::breakglass`]).

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct Devices<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn devices(&self) -> Devices<'_> {
        Devices(self.db())
    }
}

impl Tx {
    pub fn devices(&mut self) -> Devices<'_> {
        Devices(self.db())
    }
}

row_struct! {
    /// A device as stored.
    #[derive(Debug, Clone)]
    pub struct DeviceRow {
        pub id: String,
        pub user_name: String,
        pub name: String,
        /// age X25519 recipient (age1…).
        pub recipient: String,
        /// base64 ed25519 public key of the device's unlock chain.
        pub signing_key: String,
        pub created_at: Ts,
        pub revoked_at: Option<Ts>,
        /// The last unlock record accepted from the device.
        pub head_seq: i64,
        pub head_hash: String,
    }
}

/// A device to enrol (its chain starts at `head_hash`, sequence 0).
pub struct NewDevice<'s> {
    pub id: &'s str,
    pub user: &'s str,
    pub name: &'s str,
    pub recipient: &'s str,
    pub signing_key: &'s str,
    pub created_at: Ts,
    pub head_hash: &'s str,
}

/// `SELECT <every device column> FROM devices <rest>`.
macro_rules! device_query {
    ($rest:literal) => {
        concat!(
            "SELECT id, user_name, name, recipient, signing_key, created_at, revoked_at, head_seq, head_hash FROM devices",
            $rest
        )
    };
}

impl Devices<'_> {
    pub async fn get(&mut self, id: &str) -> Result<Option<DeviceRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            DeviceRow,
            device_query!(" WHERE id = $1"),
            id
        )?)
    }

    /// The device enrolled with this signing key, revoked or not.
    pub async fn id_by_signing_key(&mut self, signing_key: &str) -> Result<Option<String>> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            String,
            "SELECT id FROM devices WHERE signing_key = $1",
            signing_key
        )?)
    }

    /// How many active devices `user` has.
    pub async fn count_active_of(&mut self, user: &str) -> Result<i64> {
        Ok(scalar!(
            self.0,
            fetch_one,
            i64,
            "SELECT count(*) FROM devices WHERE user_name = $1 AND revoked_at IS NULL",
            user
        )?)
    }

    pub async fn insert(&mut self, d: &NewDevice<'_>) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO devices (id, user_name, name, recipient, signing_key, created_at, head_seq, head_hash)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
            d.id,
            d.user,
            d.name,
            d.recipient,
            d.signing_key,
            d.created_at,
            d.head_hash
        )?;
        Ok(())
    }

    /// `user`'s active devices, oldest first.
    pub async fn active_of(&mut self, user: &str) -> Result<Vec<DeviceRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            DeviceRow,
            device_query!(" WHERE user_name = $1 AND revoked_at IS NULL ORDER BY created_at, id"),
            user
        )?)
    }

    /// Every device, by user, oldest first.
    pub async fn all(&mut self) -> Result<Vec<DeviceRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            DeviceRow,
            device_query!(" ORDER BY user_name, created_at, id")
        )?)
    }

    /// The ids of `user`'s active devices.
    pub async fn active_ids_of(&mut self, user: &str) -> Result<Vec<String>> {
        Ok(scalar!(
            self.0,
            fetch_all,
            String,
            "SELECT id FROM devices WHERE user_name = $1 AND revoked_at IS NULL",
            user
        )?)
    }

    /// Every active device's (id, user, recipient), by id.
    pub async fn active_recipients(&mut self) -> Result<Vec<(String, String, String)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, String, String),
            "SELECT id, user_name, recipient FROM devices WHERE revoked_at IS NULL ORDER BY id"
        )?)
    }

    /// Whether the device exists, and when it was revoked.
    pub async fn revoked_at(&mut self, id: &str) -> Result<Option<Option<Ts>>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (Option<Ts>,),
            "SELECT revoked_at FROM devices WHERE id = $1",
            id
        )?
        .map(|r| r.0))
    }

    /// Revokes a device that is not revoked yet; false if it already was.
    pub async fn revoke(&mut self, id: &str, now: Ts) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            now,
            id
        )? == 1)
    }

    /// Moves the device's acknowledged chain head from `old` to `new` (seq, hash);
    /// false if it is no longer at `old`.
    pub async fn advance_head(
        &mut self,
        id: &str,
        old: (i64, &str),
        new: (i64, &str),
    ) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE devices SET head_seq = $1, head_hash = $2 WHERE id = $3 AND head_seq = $4 AND head_hash = $5",
            new.0,
            new.1,
            id,
            old.0,
            old.1
        )? == 1)
    }

    /// The stored unlock record `seq` of a device: (hash, body).
    pub async fn unlock(&mut self, device_id: &str, seq: i64) -> Result<Option<(String, String)>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (String, String),
            "SELECT hash, body FROM device_unlocks WHERE device_id = $1 AND seq = $2",
            device_id,
            seq
        )?)
    }

    /// Records an accepted unlock record.
    pub async fn insert_unlock(
        &mut self,
        device_id: &str,
        seq: i64,
        hash: &str,
        body: &str,
        signature: &str,
        received_at: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO device_unlocks (device_id, seq, hash, body, signature, received_at) VALUES ($1, $2, $3, $4, $5, $6)",
            device_id,
            seq,
            hash,
            body,
            signature,
            received_at
        )?;
        Ok(())
    }
}
