-- The audit high-water mark also carries the hash of the record it names, and its
-- one row always exists: a unit of work that writes beside others reads the head to
-- chain onto here, in the same round trip as it takes the audit lock (see
-- src/store/postgres.rs).
ALTER TABLE audit_high ADD COLUMN hash TEXT;
UPDATE audit_high SET hash = (SELECT a.hash FROM audit a WHERE a.seq = audit_high.seq);
INSERT INTO audit_high (one, seq) VALUES (TRUE, 0) ON CONFLICT (one) DO NOTHING;
CREATE OR REPLACE FUNCTION audit_high_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_high (one, seq, hash) VALUES (TRUE, NEW.seq, NEW.hash)
        ON CONFLICT (one) DO UPDATE SET
            seq = GREATEST(audit_high.seq, EXCLUDED.seq),
            hash = CASE WHEN EXCLUDED.seq >= audit_high.seq THEN EXCLUDED.hash
                        ELSE audit_high.hash END;
    RETURN NEW;
END $$;
