//! SSH grants on this device: after each sync, every active SSH grant of the user
//! has a key (made here, for that grant) and its certificate in the running
//! ssh-agent, with a lifetime equal to the grant's time left; a grant that ended has
//! its key taken out of the agent. What is in the agent is read back from the agent
//! itself (by the certificate's key id, `firedoor:<user>:<grant>`), so it survives
//! an app restart. With no agent the app says how to use the key without one.

use crate::console::Console;
use crate::ssh_agent::{self, AgentError, GrantKey};
use crate::Client;
use chrono::{DateTime, Utc};
use firedoor_core::api::GrantView;
use firedoor_core::lifecycle::GrantState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One SSH grant's state on this device, for the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SshStatus {
    pub grant_id: String,
    /// The key and its certificate are in the running ssh-agent.
    pub in_agent: bool,
    /// Until when (the certificate's end, which is the grant's).
    pub until: Option<DateTime<Utc>>,
    pub principals: Vec<String>,
    /// `ssh user@host`, for the first host of the grant.
    pub command: Option<String>,
    /// Why it is not in the agent, in words (no agent running, the broker refused…).
    pub problem: Option<String>,
}

fn key_id(user: &str, grant: &str) -> String {
    firedoor_core::ssh::key_id(user, grant)
}

impl Console {
    /// Puts the keys of `user`'s active SSH grants in the agent and takes out those
    /// of grants that ended. `now` is the broker's time.
    pub(crate) async fn reconcile_ssh(
        &self,
        c: &Client,
        user: &str,
        grants: &[GrantView],
        now: DateTime<Utc>,
    ) {
        let mut status: BTreeMap<String, SshStatus> = BTreeMap::new();
        let active: Vec<&GrantView> = grants
            .iter()
            .filter(|g| {
                g.ssh && g.holder == user && g.state == GrantState::Active && g.expires_at > now
            })
            .collect();
        let sock = match ssh_agent::agent_socket() {
            Ok(s) => s,
            Err(e) => {
                for g in &active {
                    status.insert(g.id.to_string(), no_agent(g, &e));
                }
                *self.ssh_status.lock().await = status;
                return;
            }
        };
        let held = match ssh_agent::identities(&sock).await {
            Ok(h) => h,
            Err(e) => {
                for g in &active {
                    status.insert(g.id.to_string(), no_agent(g, &e));
                }
                *self.ssh_status.lock().await = status;
                return;
            }
        };
        let prefix = format!("firedoor:{user}:");
        // Keys of grants that are no longer active go.
        for (blob, comment) in &held {
            if let Some(grant) = comment.strip_prefix(&prefix) {
                if !active.iter().any(|g| g.id.to_string() == grant) {
                    match ssh_agent::remove_blob(&sock, blob).await {
                        Ok(()) => {
                            tracing::info!(grant, "SSH key taken out of the agent: the grant ended")
                        }
                        Err(e) => {
                            tracing::warn!(grant, error = %e, "could not take an SSH key out of the agent")
                        }
                    }
                }
            }
        }
        for g in active {
            let id = g.id.to_string();
            let kid = key_id(user, &id);
            let until = g.expires_at.timestamp().max(0) as u64;
            let mine: Vec<&(Vec<u8>, String)> = held.iter().filter(|(_, c)| *c == kid).collect();
            let current = mine
                .iter()
                .any(|(b, _)| ssh_agent::cert_valid_before(b).is_some_and(|v| v >= until));
            if current {
                let prior = self.ssh_status.lock().await.get(&id).cloned();
                status.insert(
                    id.clone(),
                    SshStatus {
                        in_agent: true,
                        until: Some(g.expires_at),
                        problem: None,
                        ..prior.unwrap_or_else(|| blank(g))
                    },
                );
                continue;
            }
            // New, or extended (the old certificate ends before the grant): a new key.
            let s = self.add_to_agent(c, &sock, g, now).await;
            if s.in_agent {
                for (blob, _) in mine {
                    let _ = ssh_agent::remove_blob(&sock, blob).await;
                }
            }
            status.insert(id, s);
        }
        *self.ssh_status.lock().await = status;
    }

    async fn add_to_agent(
        &self,
        c: &Client,
        sock: &std::path::Path,
        g: &GrantView,
        now: DateTime<Utc>,
    ) -> SshStatus {
        let mut s = blank(g);
        let key = match GrantKey::new().and_then(|k| k.public_line().map(|l| (k, l))) {
            Ok(k) => k,
            Err(e) => {
                s.problem = Some(e.to_string());
                return s;
            }
        };
        let certs = match c.ssh_certificate(&g.id, &key.1).await {
            Ok(c) => c,
            Err(e) => {
                s.problem = Some(crate::console::ConsoleError::from(e).message);
                return s;
            }
        };
        for cert in &certs {
            let left = (cert.valid_before - now)
                .num_seconds()
                .clamp(1, u32::MAX as i64) as u32;
            if let Err(e) = ssh_agent::add(sock, &key.0, &cert.certificate, left).await {
                s.problem = Some(e.to_string());
                return s;
            }
            s.principals.extend(cert.principals.iter().cloned());
            if s.command.is_none() {
                s.command = cert.hosts.first().map(|h| match &cert.user {
                    Some(u) => format!("ssh {u}@{h}"),
                    None => format!("ssh {h}"),
                });
            }
            s.until = Some(cert.valid_before);
        }
        s.in_agent = !certs.is_empty();
        tracing::info!(grant = %g.id, "SSH key and certificate added to the agent until the grant ends");
        s
    }

    /// Puts `g`'s key and certificate into the agent now, for the command line
    /// (`firedoor creds`): what this process's sync just put there is reused;
    /// otherwise a new key is certified and replaces the grant's older keys in the
    /// agent (the certificate's principals and hosts are only known from the
    /// broker's answer, not from a key another process added).
    pub async fn ssh_into_agent(&self, g: &GrantView) -> crate::console::Result<SshStatus> {
        use crate::console::ConsoleError;
        let id = g.id.to_string();
        if let Some(s) = self
            .ssh_status
            .lock()
            .await
            .get(&id)
            .filter(|s| s.in_agent && s.command.is_some())
        {
            return Ok(s.clone());
        }
        let c = self.client().await?;
        let (user, offset) = {
            let live = self.live.lock().await;
            (
                live.session
                    .as_ref()
                    .map(|s| s.user.clone())
                    .unwrap_or_default(),
                live.clock_offset_ms,
            )
        };
        let agent_error = |e: AgentError| {
            ConsoleError::new(firedoor_core::ConsoleErrorCode::SshAgent, e.to_string())
        };
        let sock = ssh_agent::agent_socket().map_err(agent_error)?;
        let kid = key_id(&user, &id);
        let older: Vec<Vec<u8>> = ssh_agent::identities(&sock)
            .await
            .map_err(agent_error)?
            .into_iter()
            .filter(|(_, c)| *c == kid)
            .map(|(b, _)| b)
            .collect();
        let now = Utc::now() + chrono::Duration::milliseconds(offset);
        let s = self.add_to_agent(&c, &sock, g, now).await;
        if s.in_agent {
            for blob in older {
                let _ = ssh_agent::remove_blob(&sock, &blob).await;
            }
        }
        self.ssh_status.lock().await.insert(id, s.clone());
        Ok(s)
    }

    /// This device's SSH grants, for the snapshot.
    pub async fn ssh_status(&self) -> Vec<SshStatus> {
        self.ssh_status.lock().await.values().cloned().collect()
    }
}

fn blank(g: &GrantView) -> SshStatus {
    SshStatus {
        grant_id: g.id.to_string(),
        in_agent: false,
        until: Some(g.expires_at),
        principals: vec![],
        command: None,
        problem: None,
    }
}

fn no_agent(g: &GrantView, e: &AgentError) -> SshStatus {
    SshStatus {
        problem: Some(match e {
            AgentError::NoAgent => "no ssh-agent is running: start one (eval \"$(ssh-agent)\") and restart Firedoor from that shell, and the key for this grant goes into it".to_string(),
            other => other.to_string(),
        }),
        ..blank(g)
    }
}
