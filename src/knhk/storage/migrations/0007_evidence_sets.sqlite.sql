-- Evidence sets (SPEC §8): the full member list of a receipt whose evidence is a truncated sample, keyed by the
-- commitment's Merkle root (content-addressed; written before the receipt). Append-only by trigger.
CREATE TABLE evidence_sets (
    root       TEXT    PRIMARY KEY,
    sector     TEXT,
    count      INTEGER NOT NULL,
    encoding   TEXT    NOT NULL,
    members    BLOB    NOT NULL,
    created_us INTEGER NOT NULL
);

CREATE TRIGGER evidence_sets_no_update BEFORE UPDATE ON evidence_sets
BEGIN SELECT RAISE(ABORT, 'evidence_sets is append-only: UPDATE refused'); END;
CREATE TRIGGER evidence_sets_no_delete BEFORE DELETE ON evidence_sets
BEGIN SELECT RAISE(ABORT, 'evidence_sets is append-only: DELETE refused'); END;
