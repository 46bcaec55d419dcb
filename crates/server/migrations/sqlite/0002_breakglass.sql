-- Offline break glass: enrolled devices, the secrets the broker holds (sealed with
-- the broker key), the envelopes sealed to each device, and the unlock records
-- devices have uploaded (see firedoor_core::breakglass).

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users(name),
    name        TEXT NOT NULL,
    -- age X25519 recipient (age1…) envelopes are encrypted to.
    recipient   TEXT NOT NULL,
    -- base64 ed25519 public key that signs the device's unlock chain.
    signing_key TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT,
    -- The last unlock record accepted from the device.
    head_seq    INTEGER NOT NULL DEFAULT 0,
    head_hash   TEXT NOT NULL
);
CREATE INDEX devices_user ON devices(user_name);

CREATE TABLE secrets (
    name                TEXT PRIMARY KEY,
    -- 0 while no value has been stored.
    version             INTEGER NOT NULL DEFAULT 0,
    -- age-encrypted to the broker key.
    value               BLOB,
    -- A rotation's new value, stored (sealed) before the target is changed, so a
    -- retry after a crash sends the same value and broker and target agree.
    pending_value       BLOB,
    updated_at          TEXT,
    -- Set while a rotation is due (after an unlock) or failing.
    rotation_due_at     TEXT,
    rotation_attempts   INTEGER NOT NULL DEFAULT 0,
    -- Not before this time after a failure (backoff).
    next_rotation_at    TEXT,
    last_rotation_error TEXT,
    -- Lease of the broker (or CLI) doing a rotation right now.
    rotating_until      TEXT,
    -- The unlock that made the rotation due, for the audit record.
    rotation_reason     TEXT
);

CREATE TABLE envelopes (
    device_id  TEXT NOT NULL REFERENCES devices(id),
    secret     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    meta_json  TEXT NOT NULL,
    signature  TEXT NOT NULL,
    -- ASCII-armoured age file encrypted to the device's recipient.
    ciphertext TEXT NOT NULL,
    sealed_at  TEXT NOT NULL,
    not_after  TEXT NOT NULL,
    PRIMARY KEY (device_id, secret)
);
CREATE INDEX envelopes_secret ON envelopes(secret, version);

CREATE TABLE device_unlocks (
    device_id   TEXT NOT NULL REFERENCES devices(id),
    seq         INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    body        TEXT NOT NULL,
    signature   TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
