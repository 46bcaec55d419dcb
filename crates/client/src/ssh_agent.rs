//! The device side of SSH grants: a fresh ed25519 key per grant, made in memory,
//! certified by the broker, and handed to the user's running `ssh-agent` with a
//! lifetime equal to the time the grant has left (the agent protocol,
//! draft-miller-ssh-agent: `SSH_AGENTC_ADD_ID_CONSTRAINED` with
//! `SSH_AGENT_CONSTRAIN_LIFETIME`). The private key never touches the disk: it lives
//! in this process until it is in the agent, then only there. Removed from the
//! agent when the grant ends.

use ssh_key::rand_core::OsRng;
use ssh_key::{Certificate, PrivateKey};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use zeroize::Zeroizing;

const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENT_SUCCESS: u8 = 6;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
const SSH_AGENTC_REMOVE_IDENTITY: u8 = 18;
const SSH_AGENTC_ADD_ID_CONSTRAINED: u8 = 25;
const SSH_AGENT_CONSTRAIN_LIFETIME: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no ssh-agent is running (SSH_AUTH_SOCK is not set)")]
    NoAgent,
    #[error("cannot reach the ssh-agent at {0}: {1}")]
    Unreachable(String, String),
    #[error("the ssh-agent refused the key")]
    Refused,
    #[error("the ssh-agent answered something unexpected")]
    Protocol,
    #[error("{0}")]
    Key(String),
}

/// A key made for one grant: the private half stays in memory (zeroed on drop).
pub struct GrantKey {
    key: PrivateKey,
}

impl GrantKey {
    pub fn new() -> Result<GrantKey, AgentError> {
        Ok(GrantKey {
            key: PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519)
                .map_err(|e| AgentError::Key(e.to_string()))?,
        })
    }

    /// The public key line to send to the broker.
    pub fn public_line(&self) -> Result<String, AgentError> {
        self.key
            .public_key()
            .to_openssh()
            .map_err(|e| AgentError::Key(e.to_string()))
    }
}

/// The agent socket: `$SSH_AUTH_SOCK`.
pub fn agent_socket() -> Result<PathBuf, AgentError> {
    match std::env::var_os("SSH_AUTH_SOCK") {
        Some(s) if !s.is_empty() => Ok(PathBuf::from(s)),
        _ => Err(AgentError::NoAgent),
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

async fn call(sock: &Path, msg: &[u8]) -> Result<Vec<u8>, AgentError> {
    let unreachable =
        |e: std::io::Error| AgentError::Unreachable(sock.display().to_string(), e.to_string());
    let mut s = UnixStream::connect(sock).await.map_err(unreachable)?;
    let mut framed = Vec::with_capacity(msg.len() + 4);
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(msg);
    s.write_all(&framed).await.map_err(unreachable)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.map_err(unreachable)?;
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > 256 * 1024 {
        return Err(AgentError::Protocol);
    }
    let mut reply = vec![0u8; n];
    s.read_exact(&mut reply).await.map_err(unreachable)?;
    Ok(reply)
}

fn cert_blob(cert_line: &str) -> Result<(Certificate, Vec<u8>), AgentError> {
    let cert =
        Certificate::from_openssh(cert_line.trim()).map_err(|e| AgentError::Key(e.to_string()))?;
    let blob = cert
        .to_bytes()
        .map_err(|e| AgentError::Key(e.to_string()))?;
    Ok((cert, blob))
}

/// Adds `key` with its certificate to the agent at `sock` for `lifetime_secs`.
pub async fn add(
    sock: &Path,
    key: &GrantKey,
    cert_line: &str,
    lifetime_secs: u32,
) -> Result<(), AgentError> {
    let (cert, blob) = cert_blob(cert_line)?;
    let Some(pair) = key.key.key_data().ed25519() else {
        return Err(AgentError::Key("not an ed25519 key".into()));
    };
    let public = pair.public.0;
    let mut secret = Zeroizing::new(Vec::with_capacity(64));
    secret.extend_from_slice(pair.private.as_ref());
    secret.extend_from_slice(&public);
    let mut msg = Zeroizing::new(vec![SSH_AGENTC_ADD_ID_CONSTRAINED]);
    put_string(&mut msg, cert.algorithm().to_certificate_type().as_bytes());
    put_string(&mut msg, &blob);
    put_string(&mut msg, &public);
    put_string(&mut msg, &secret);
    put_string(&mut msg, cert.key_id().as_bytes());
    msg.push(SSH_AGENT_CONSTRAIN_LIFETIME);
    msg.extend_from_slice(&lifetime_secs.max(1).to_be_bytes());
    match call(sock, &msg).await?.first() {
        Some(&SSH_AGENT_SUCCESS) => Ok(()),
        Some(&SSH_AGENT_FAILURE) => Err(AgentError::Refused),
        _ => Err(AgentError::Protocol),
    }
}

/// Removes the certificate `cert_line` (and so its key) from the agent; Ok if it
/// was not there (any more).
pub async fn remove(sock: &Path, cert_line: &str) -> Result<(), AgentError> {
    let (_, blob) = cert_blob(cert_line)?;
    remove_blob(sock, &blob).await
}

/// The `valid_before` (Unix seconds) of an identity blob that is a certificate.
pub fn cert_valid_before(blob: &[u8]) -> Option<u64> {
    Certificate::from_bytes(blob).ok().map(|c| c.valid_before())
}

/// The comments of the identities the agent holds (for a certificate Firedoor
/// added: its key id, `firedoor:<user>:<grant>`).
pub async fn comments(sock: &Path) -> Result<Vec<String>, AgentError> {
    Ok(identities(sock)
        .await?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// Removes the identity whose public key blob is `blob`; Ok if it was not there.
pub async fn remove_blob(sock: &Path, blob: &[u8]) -> Result<(), AgentError> {
    let mut msg = vec![SSH_AGENTC_REMOVE_IDENTITY];
    put_string(&mut msg, blob);
    match call(sock, &msg).await?.first() {
        Some(&SSH_AGENT_SUCCESS) | Some(&SSH_AGENT_FAILURE) => Ok(()),
        _ => Err(AgentError::Protocol),
    }
}

/// The identities the agent holds: (public key or certificate blob, comment).
pub async fn identities(sock: &Path) -> Result<Vec<(Vec<u8>, String)>, AgentError> {
    let reply = call(sock, &[SSH_AGENTC_REQUEST_IDENTITIES]).await?;
    if reply.first() != Some(&SSH_AGENT_IDENTITIES_ANSWER) {
        return Err(AgentError::Protocol);
    }
    let mut at = 1usize;
    let u32_at = |at: &mut usize| -> Result<usize, AgentError> {
        let b = reply.get(*at..*at + 4).ok_or(AgentError::Protocol)?;
        *at += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = u32_at(&mut at)?;
    let mut out = Vec::new();
    for _ in 0..n.min(10_000) {
        let blob_len = u32_at(&mut at)?;
        let blob = reply
            .get(at..at + blob_len)
            .ok_or(AgentError::Protocol)?
            .to_vec();
        at += blob_len;
        let c_len = u32_at(&mut at)?;
        let c = reply.get(at..at + c_len).ok_or(AgentError::Protocol)?;
        at += c_len;
        out.push((blob, String::from_utf8_lossy(c).into_owned()));
    }
    Ok(out)
}
