//! The SSH certificate authorities (private keys sealed under the broker key) and
//! the certificates they issued.

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct Ssh<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn ssh(&self) -> Ssh<'_> {
        Ssh(self.db())
    }
}

impl Tx {
    pub fn ssh(&mut self) -> Ssh<'_> {
        Ssh(self.db())
    }
}

row_struct! {
    /// A certificate authority key of an SSH integration.
    #[derive(Debug, Clone)]
    pub struct CaRow {
        pub id: String,
        pub integration: String,
        /// OpenSSH public key line.
        pub public_key: String,
        /// The OpenSSH private key, sealed under the broker key.
        pub sealed_private: Vec<u8>,
        /// It signs from then (a newer one takes over at its own `signs_from`).
        pub signs_from: Ts,
        /// Hosts stop trusting it after then (no certificate it signed is valid
        /// any longer).
        pub retire_after: Option<Ts>,
        pub created_at: Ts,
    }
}

/// A certificate about to be recorded.
pub struct NewCert<'a> {
    pub grant_id: &'a str,
    pub integration: &'a str,
    pub ca_id: &'a str,
    pub fingerprint: &'a str,
    pub principals: &'a str,
    pub valid_after: Ts,
    pub valid_before: Ts,
    pub issued_at: Ts,
}

impl Ssh<'_> {
    /// The CA keys of `integration`, oldest first.
    pub async fn cas(&mut self, integration: &str) -> Result<Vec<CaRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            CaRow,
            "SELECT id, integration, public_key, sealed_private, signs_from, retire_after, created_at
             FROM ssh_cas WHERE integration = $1 ORDER BY signs_from, created_at",
            integration
        )?)
    }

    /// Every CA key of every integration.
    pub async fn all_cas(&mut self) -> Result<Vec<CaRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            CaRow,
            "SELECT id, integration, public_key, sealed_private, signs_from, retire_after, created_at
             FROM ssh_cas ORDER BY integration, signs_from, created_at"
        )?)
    }

    pub async fn insert_ca(&mut self, c: &CaRow) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO ssh_cas (id, integration, public_key, sealed_private, signs_from, retire_after, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &c.id,
            &c.integration,
            &c.public_key,
            &c.sealed_private,
            c.signs_from,
            c.retire_after,
            c.created_at
        )?;
        Ok(())
    }

    /// Hosts may stop trusting CA `id` after `at`.
    pub async fn retire_after(&mut self, id: &str, at: Ts) -> Result<()> {
        exec!(
            self.0,
            "UPDATE ssh_cas SET retire_after = $1 WHERE id = $2",
            at,
            id
        )?;
        Ok(())
    }

    /// Records a certificate; its serial.
    pub async fn insert_cert(&mut self, c: &NewCert<'_>) -> Result<i64> {
        Ok(scalar!(
            self.0,
            fetch_one,
            i64,
            "INSERT INTO ssh_certs (grant_id, integration, ca_id, fingerprint, principals, valid_after, valid_before, issued_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING serial",
            c.grant_id,
            c.integration,
            c.ca_id,
            c.fingerprint,
            c.principals,
            c.valid_after,
            c.valid_before,
            c.issued_at
        )?)
    }

    /// How many certificates grant `grant` has for `integration`.
    pub async fn certs_of(&mut self, grant: &str, integration: &str) -> Result<i64> {
        Ok(scalar!(
            self.0,
            fetch_one,
            i64,
            "SELECT COUNT(*) FROM ssh_certs WHERE grant_id = $1 AND integration = $2",
            grant,
            integration
        )?)
    }

    /// (CA id, serial) of every certificate still valid at `now` whose grant is no
    /// longer active: what the KRL must list.
    pub async fn revoked(&mut self, now: Ts) -> Result<Vec<(String, i64)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, i64),
            "SELECT c.ca_id, c.serial FROM ssh_certs c JOIN grants g ON g.id = c.grant_id
             WHERE g.state != 'active' AND c.valid_before > $1 ORDER BY c.serial",
            now
        )?)
    }
}
