//! The break-glass and access statements of the store (devices, unlock records,
//! secrets, envelopes, a disabled user's grants and requests) run unchanged on
//! SQLite and on PostgreSQL: the same calls, the same answers.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use firedoor_server::store::devices::NewDevice;
use firedoor_server::store::envelopes::NewEnvelope;
use firedoor_server::store::secrets::RotationTrigger;
use firedoor_server::store::{DatabaseUrl, Store, Ts};

fn t(secs: i64) -> Ts {
    Ts(
        DateTime::<Utc>::from_timestamp(1_900_000_000, 123_456_000).unwrap()
            + Duration::seconds(secs),
    )
}

fn envelope(device_id: &str, version: i64, at: i64) -> NewEnvelope<'_> {
    NewEnvelope {
        device_id,
        version,
        meta_json: "{}",
        signature: "sig",
        ciphertext: "ct",
        sealed_at: t(at),
        not_after: t(at + 3600),
    }
}

async fn exercise(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    for u in ["alice", "bob"] {
        tx.users()
            .insert(u, "[\"oncall\"]", false, t(0))
            .await
            .unwrap();
    }
    for (id, user, key) in [
        ("dev_a", "alice", "ka"),
        ("dev_b", "bob", "kb"),
        ("dev_c", "alice", "kc"),
    ] {
        tx.devices()
            .insert(&NewDevice {
                id,
                user,
                name: "laptop",
                recipient: "age1xyz",
                signing_key: key,
                created_at: t(1),
                head_hash: "genesis",
            })
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    // Devices.
    let d = store.devices().get("dev_a").await.unwrap().unwrap();
    assert_eq!((d.created_at, d.revoked_at, d.head_seq), (t(1), None, 0));
    assert_eq!(
        store
            .devices()
            .id_by_signing_key("kb")
            .await
            .unwrap()
            .as_deref(),
        Some("dev_b")
    );
    assert_eq!(store.devices().count_active_of("alice").await.unwrap(), 2);
    assert_eq!(store.devices().active_of("alice").await.unwrap().len(), 2);
    assert_eq!(store.devices().all().await.unwrap().len(), 3);
    assert_eq!(store.devices().active_recipients().await.unwrap().len(), 3);
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .devices()
        .advance_head("dev_a", (0, "genesis"), (1, "h1"))
        .await
        .unwrap());
    assert!(!tx
        .devices()
        .advance_head("dev_a", (0, "genesis"), (1, "h1"))
        .await
        .unwrap());
    tx.devices()
        .insert_unlock("dev_a", 1, "h1", "body", "sig", t(2))
        .await
        .unwrap();
    assert!(tx.devices().revoke("dev_c", t(3)).await.unwrap());
    assert!(!tx.devices().revoke("dev_c", t(4)).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        store.devices().unlock("dev_a", 1).await.unwrap(),
        Some(("h1".into(), "body".into()))
    );
    assert_eq!(
        store.devices().revoked_at("dev_c").await.unwrap(),
        Some(Some(t(3)))
    );
    assert_eq!(store.devices().revoked_at("nope").await.unwrap(), None);
    assert_eq!(
        store.devices().active_ids_of("alice").await.unwrap(),
        vec!["dev_a".to_string()]
    );

    // Secrets: store, mark due, claim, pend, promote, fail, release.
    let mut tx = store.begin().await.unwrap();
    tx.secrets().ensure("db").await.unwrap();
    tx.secrets().ensure("db").await.unwrap();
    assert!(tx
        .secrets()
        .store_value("db", 0, b"sealed-1", t(10))
        .await
        .unwrap());
    assert!(!tx
        .secrets()
        .store_value("db", 0, b"sealed-1", t(10))
        .await
        .unwrap());
    tx.secrets()
        .mark_due("db", 1, t(20), "unlock")
        .await
        .unwrap();
    tx.secrets()
        .mark_due("db", 1, t(30), "later")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let s = store.secrets().get("db").await.unwrap().unwrap();
    assert_eq!(
        (s.version, s.updated_at, s.rotation_due_at),
        (1, Some(t(10)), Some(t(20)))
    );
    assert_eq!(s.rotation_reason.as_deref(), Some("unlock"));
    assert_eq!(s.value.as_deref(), Some(&b"sealed-1"[..]));
    assert_eq!(store.secrets().version("db").await.unwrap(), Some(1));
    assert_eq!(store.secrets().stored_values().await.unwrap().len(), 1);
    assert!(store.secrets().not_due().await.unwrap().is_empty());
    assert!(store
        .secrets()
        .due_for_rotation(t(19))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.secrets().due_for_rotation(t(20)).await.unwrap(),
        vec![("db".to_string(), 0)]
    );

    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .secrets()
        .claim_rotation("db", t(21), t(81), RotationTrigger::Due)
        .await
        .unwrap());
    assert!(!tx
        .secrets()
        .claim_rotation("db", t(22), t(82), RotationTrigger::Manual)
        .await
        .unwrap());
    tx.secrets().set_pending("db", b"pending-2").await.unwrap();
    let pending = tx.secrets().pending_value("db").await.unwrap();
    assert_eq!(pending.as_deref(), Some(&b"pending-2"[..]));
    assert!(!tx
        .secrets()
        .promote_pending("db", 0, pending.as_deref(), t(23))
        .await
        .unwrap());
    tx.secrets()
        .record_rotation_failure("db", 1, t(40), "refused", t(23))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(store
        .secrets()
        .due_for_rotation(t(30))
        .await
        .unwrap()
        .is_empty());
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .secrets()
        .claim_rotation("db", t(41), t(101), RotationTrigger::Due)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    store.secrets().release_leases().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .secrets()
        .promote_pending("db", 1, pending.as_deref(), t(50))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let s = store.secrets().get("db").await.unwrap().unwrap();
    assert_eq!(
        (
            s.version,
            s.rotation_due_at,
            s.rotating_until,
            s.rotation_attempts
        ),
        (2, None, None, 0)
    );
    assert_eq!(s.value.as_deref(), Some(&b"pending-2"[..]));
    // A worker that found "db" due before another finished rotating it: its claim
    // is refused and changes nothing (it used to claim and rotate a second time).
    let mut tx = store.begin().await.unwrap();
    assert!(!tx
        .secrets()
        .claim_rotation("db", t(51), t(111), RotationTrigger::Due)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    // Due, but its retry is not: refused too.
    let mut tx = store.begin().await.unwrap();
    tx.secrets()
        .mark_due("db", 2, t(52), "unlock")
        .await
        .unwrap();
    tx.secrets()
        .record_rotation_failure("db", 1, t(60), "refused", t(52))
        .await
        .unwrap();
    assert!(!tx
        .secrets()
        .claim_rotation("db", t(53), t(113), RotationTrigger::Due)
        .await
        .unwrap());
    // Once the retry is due, the worker's claim holds.
    assert!(tx
        .secrets()
        .claim_rotation("db", t(61), t(121), RotationTrigger::Due)
        .await
        .unwrap());
    drop(tx); // rolled back: the rest of the test expects the rotated state
    assert_eq!(
        store.secrets().not_due().await.unwrap(),
        vec![("db".to_string(), 2, Some(t(50)))]
    );
    let mut tx = store.begin().await.unwrap();
    tx.secrets().ensure("manual").await.unwrap();
    assert!(!tx
        .secrets()
        .flag_manual_rotation("manual", "by hand")
        .await
        .unwrap());
    tx.commit().await.unwrap();

    // Envelopes.
    let mut tx = store.begin().await.unwrap();
    let many: Vec<NewEnvelope<'_>> = vec![envelope("dev_a", 2, 50), envelope("dev_b", 2, 50)];
    tx.envelopes().insert_many("db", &many).await.unwrap();
    tx.envelopes()
        .upsert("db", &envelope("dev_a", 2, 60))
        .await
        .unwrap();
    tx.envelopes()
        .upsert("other", &envelope("dev_c", 1, 60))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut users = store.envelopes().holder_users("db").await.unwrap();
    users.sort();
    assert_eq!(users, vec!["alice".to_string(), "bob".to_string()]);
    assert_eq!(
        store.envelopes().held_by("dev_a").await.unwrap(),
        vec![("db".to_string(), 2)]
    );
    assert_eq!(
        store.envelopes().validity_of("dev_a").await.unwrap(),
        vec![("db".to_string(), 2, t(3660))]
    );
    assert_eq!(store.envelopes().of_device("dev_b").await.unwrap().len(), 1);
    assert_eq!(store.envelopes().count_sealed("db", 2).await.unwrap(), 2);
    assert_eq!(store.envelopes().count_sealed("other", 1).await.unwrap(), 0);
    let holders = store.envelopes().holders().await.unwrap();
    assert_eq!(holders.len(), 3);
    assert!(holders.iter().any(|h| h.1 == "dev_c" && h.4 == Some(t(3))));
    let mut tx = store.begin().await.unwrap();
    assert!(!tx
        .envelopes()
        .delete_version("dev_b", "db", 1)
        .await
        .unwrap());
    assert!(tx
        .envelopes()
        .delete_version("dev_b", "db", 2)
        .await
        .unwrap());
    tx.envelopes().delete("dev_c", "other").await.unwrap();
    tx.envelopes().delete_for_device("dev_a").await.unwrap();
    tx.envelopes()
        .upsert("db", &envelope("dev_b", 2, 70))
        .await
        .unwrap();
    tx.envelopes().delete_for_secret("db").await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.envelopes().holders().await.unwrap().is_empty());
    // Past the multi-row chunk.
    let ids: Vec<String> = (0..450).map(|i| format!("dev_{i}")).collect();
    let mut tx = store.begin().await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        tx.devices()
            .insert(&NewDevice {
                id,
                user: "bob",
                name: "n",
                recipient: "age1",
                signing_key: &format!("key{i}"),
                created_at: t(1),
                head_hash: "genesis",
            })
            .await
            .unwrap();
    }
    let rows: Vec<NewEnvelope<'_>> = ids.iter().map(|id| envelope(id, 2, 80)).collect();
    tx.envelopes().insert_many("db", &rows).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.envelopes().count_sealed("db", 2).await.unwrap(), 450);

    // Users and access.
    let mut tx = store.begin().await.unwrap();
    tx.users().set_disabled("bob", t(90)).await.unwrap();
    assert_eq!(tx.users().revoke_tokens_of("bob", t(90)).await.unwrap(), 0);
    tx.users()
        .set_groups_json("alice", "[\"sre\"]")
        .await
        .unwrap();
    assert!(tx
        .access()
        .revoke_live_grants_of("bob", "system", t(91))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        tx.access()
            .cancel_pending_requests_of("bob", t(90))
            .await
            .unwrap(),
        0
    );
    assert!(tx
        .access()
        .revoke_live_grants_of_disabled(t(91))
        .await
        .unwrap()
        .is_empty());
    tx.commit().await.unwrap();
    assert!(!store.access().disabled_hold_live_grants().await.unwrap());
    assert_eq!(
        store.users().groups_json("alice").await.unwrap().as_deref(),
        Some("[\"sre\"]")
    );
    let all = store.users().all_with_state().await.unwrap();
    assert_eq!(
        all[1],
        ("bob".into(), "[\"oncall\"]".into(), 0, Some(t(90)))
    );
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("firedoor.db"))
        .await
        .unwrap();
    exercise(&store).await;
}

#[tokio::test]
async fn postgres() {
    let url = firedoor_testkit::shared_server().fresh_database();
    let store = Store::open(&DatabaseUrl::Postgres(url)).await.unwrap();
    exercise(&store).await;
}
