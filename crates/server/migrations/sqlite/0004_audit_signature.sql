-- Each audit record carries an ed25519 signature (base64) by the broker's signing
-- key over its sequence number and hash (see firedoor_core::audit::head_message).
-- Records written before this migration have none: the broker signs them at the
-- first start after the upgrade, before it anchors the log (see crate::anchor).
ALTER TABLE audit ADD COLUMN signature TEXT;
