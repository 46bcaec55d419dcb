//! `firedoor-server audit verify`, `audit public-key` and `audit sinks`.

use anyhow::{bail, Context};
use ed25519_dalek::VerifyingKey;
use firedoor_core::audit::{check_anchor, verify_signed_chain, AuditRecord};
use firedoor_core::breakglass::{decode_public_key, encode_public_key, fingerprint};
use firedoor_server::anchor;
use std::io::BufRead;
use std::path::Path;

pub fn public_key_from(key_file: &Path, given: Option<&str>) -> anyhow::Result<VerifyingKey> {
    if let Some(k) = given {
        return decode_public_key(k).map_err(|e| {
            anyhow::anyhow!("--public-key: {e} (expected the base64 key `audit public-key` prints)")
        });
    }
    if !key_file.exists() {
        bail!(
            "no broker key file at {}: pass --key-file, or the public key with --public-key",
            key_file.display()
        );
    }
    Ok(firedoor_server::vault::BrokerKey::load_or_create(key_file)?.verifying_key())
}

/// `audit public-key`.
pub fn print_public_key(key_file: &Path) -> anyhow::Result<i32> {
    let vk = public_key_from(key_file, None)?;
    println!("{}", encode_public_key(&vk));
    eprintln!(
        "fingerprint {} (the same key signs break-glass envelopes: GET /api/v1/broker)",
        fingerprint(&vk)
    );
    Ok(0)
}

/// `audit verify` on the database: hashes, links, signatures, the end of the log,
/// and the anchor file.
pub async fn verify_db(
    store: &firedoor_server::store::Store,
    key_file: &Path,
    given: Option<&str>,
    anchor_path: &Path,
) -> anyhow::Result<i32> {
    let vk = public_key_from(key_file, given)?;
    let v = match firedoor_server::audit::verify_with(store, &vk).await? {
        Ok(v) => v,
        Err(e) => {
            println!("AUDIT LOG BROKEN at record {}: {}", e.seq, e.problem);
            return Ok(1);
        }
    };
    let anchors = anchor::read(anchor_path)?;
    if let Err(e) = anchor::check(store, anchor_path, &anchors, &vk, true).await? {
        println!("AUDIT LOG ROLLED BACK: {e}");
        return Ok(1);
    }
    println!(
        "audit log ok: {} records, head {}, every record signed by {}",
        v.records,
        v.head,
        fingerprint(&vk)
    );
    // PostgreSQL: records committed with their change but not yet chained (a
    // replica died between the two; a running broker chains them within a pass).
    let waiting = store.records_awaiting_chain().await?;
    if waiting > 0 {
        println!(
            "{waiting} more records are committed and waiting to be chained (a running broker chains them on its next pass; they are not yet signed)"
        );
    }
    match anchors.iter().map(|h| h.seq).max() {
        Some(high) => println!(
            "anchor {}: {} signed heads, the log holds all of them (highest: record {high})",
            anchor_path.display(),
            anchors.len()
        ),
        None => println!(
            "anchor {}: no heads anchored yet (the broker writes them while it runs)",
            anchor_path.display()
        ),
    }
    Ok(0)
}

/// `audit verify --export FILE --public-key KEY [--audit-anchor FILE]`: checks an
/// export with only the public key (and, if given, the anchor file).
pub fn verify_export(file: &Path, key: &str, anchor_path: Option<&Path>) -> anyhow::Result<i32> {
    let vk = public_key_from(Path::new(""), Some(key))?;
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let mut records: Vec<AuditRecord> = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(r) => records.push(r),
            Err(e) => {
                println!(
                    "AUDIT EXPORT BROKEN at line {}: not an audit record ({e})",
                    i + 1
                );
                return Ok(1);
            }
        }
    }
    let (n, head) = match verify_signed_chain(&records, &vk) {
        Ok(v) => v,
        Err(e) => {
            println!("AUDIT LOG BROKEN at record {}: {}", e.seq, e.problem);
            return Ok(1);
        }
    };
    if let Some(path) = anchor_path {
        for (i, h) in anchor::read(path)?.iter().enumerate() {
            let at = records
                .iter()
                .find(|r| r.seq == h.seq)
                .map(|r| r.hash.as_str());
            if let Err(e) = check_anchor(h, &vk, n, at) {
                println!(
                    "AUDIT LOG ROLLED BACK: {} line {}: {e}",
                    path.display(),
                    i + 1
                );
                return Ok(1);
            }
        }
    }
    println!(
        "audit export ok: {n} records, head {head}, every record signed by {}",
        fingerprint(&vk)
    );
    Ok(0)
}

/// `audit sinks`: one line per sink of the policy; 1 while one is failing.
pub async fn print_sinks(broker: &firedoor_server::service::Broker) -> anyhow::Result<i32> {
    let sinks = broker
        .audit_sinks(&firedoor_server::audit::cli_actor())
        .await?;
    if sinks.is_empty() {
        println!("the policy declares no audit sinks ([audit_sinks.NAME])");
        return Ok(0);
    }
    let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut failing = false;
    for s in &sinks {
        let mut line = format!(
            "{}\t{}\t{}\tdelivered {} of {}\tlag {}",
            s.name, s.kind, s.destination, s.delivered_seq, s.head_seq, s.lag
        );
        if let Some(t) = s.delivered_at {
            line.push_str(&format!("\tlast delivery {}", when(t)));
        }
        if s.failures > 0 {
            failing = true;
            line.push_str(&format!(
                "\tFAILING ({} {}): {}",
                s.failures,
                if s.failures == 1 {
                    "attempt"
                } else {
                    "attempts"
                },
                s.last_error.as_deref().unwrap_or("?")
            ));
            if let Some(t) = s.next_attempt_at {
                line.push_str(&format!("\tnext attempt {}", when(t)));
            }
        }
        println!("{line}");
    }
    Ok(i32::from(failing))
}
