-- The SSH user certificate authorities, one or more per SSH integration (more
-- while one is rotated): the private key sealed under the broker key; a key signs
-- from `signs_from`, and is published to hosts until `retire_after`.
CREATE TABLE ssh_cas (
    id             TEXT PRIMARY KEY,
    integration    TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    sealed_private BYTEA NOT NULL,
    signs_from     TIMESTAMPTZ NOT NULL,
    retire_after   TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX ssh_cas_integration ON ssh_cas(integration, signs_from);

-- Every certificate issued: its serial (the KRL's key), the grant, the CA, the key
-- it certifies. A certificate of a grant no longer active and not yet expired is
-- revoked (listed in the KRL).
CREATE TABLE ssh_certs (
    serial       BIGSERIAL PRIMARY KEY,
    grant_id     TEXT NOT NULL,
    integration  TEXT NOT NULL,
    ca_id        TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    principals   TEXT NOT NULL,
    valid_after  TIMESTAMPTZ NOT NULL,
    valid_before TIMESTAMPTZ NOT NULL,
    issued_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX ssh_certs_grant ON ssh_certs(grant_id);
CREATE INDEX ssh_certs_valid ON ssh_certs(valid_before);
