-- Evidence sets (SPEC §8): the full member list of a receipt whose evidence is a truncated sample, keyed by the
-- commitment's Merkle root (content-addressed; written before the receipt). Append-only by trigger.
CREATE TABLE evidence_sets (
    root       TEXT   PRIMARY KEY,
    sector     TEXT,
    count      BIGINT NOT NULL,
    encoding   TEXT   NOT NULL,
    members    BYTEA  NOT NULL,
    created_us BIGINT NOT NULL
);

CREATE TRIGGER evidence_sets_append_only BEFORE UPDATE OR DELETE ON evidence_sets
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER evidence_sets_no_truncate BEFORE TRUNCATE ON evidence_sets
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
