-- Observations by month of ingest (received_us, UTC) for retention (SPEC §11, knhk.observations.retention). SQLite
-- has no declarative partitions; a partition here is the range of rows of one month of received_us (indexed), and
-- it goes whole: the DELETE trigger refuses every row unless an archived segment registered in
-- observation_segments (written after the segment manifest's ledger entry) covers the row's month and seq, and
-- the retention deletes such a month in the same transaction that registers its segment, checking the count.
--
-- observation_ids keeps every id ever stored (id → seq, received_us), filled by a trigger of every insert and
-- never deleted, as on PostgreSQL (where it is what keeps ids unique across partitions): an id stays used after
-- its observation is archived, and locates its segment.

CREATE TABLE observation_ids (
    id          TEXT    PRIMARY KEY,
    seq         INTEGER NOT NULL,
    received_us INTEGER NOT NULL
);
INSERT INTO observation_ids (id, seq, received_us) SELECT id, seq, received_us FROM observations ORDER BY seq;
CREATE TRIGGER observation_ids_no_update BEFORE UPDATE ON observation_ids
BEGIN SELECT RAISE(ABORT, 'observation_ids is append-only: UPDATE refused'); END;
CREATE TRIGGER observation_ids_no_delete BEFORE DELETE ON observation_ids
BEGIN SELECT RAISE(ABORT, 'observation_ids is append-only: DELETE refused'); END;

-- One row per archived (and then dropped) month: the segment manifest's facts and its ledger entry.
CREATE TABLE observation_segments (
    id              TEXT    PRIMARY KEY,
    period          TEXT    NOT NULL,
    lo_us           INTEGER NOT NULL,
    hi_us           INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    first_seq       INTEGER,
    last_seq        INTEGER,
    merkle_root     TEXT    NOT NULL,
    manifest_sha256 TEXT    NOT NULL,
    ledger_log      TEXT    NOT NULL,
    ledger_seq      INTEGER NOT NULL,
    archive         TEXT    NOT NULL,
    created_us      INTEGER NOT NULL
);
CREATE INDEX observation_segments_period ON observation_segments (lo_us);
CREATE TRIGGER observation_segments_no_update BEFORE UPDATE ON observation_segments
BEGIN SELECT RAISE(ABORT, 'observation_segments is append-only: UPDATE refused'); END;
CREATE TRIGGER observation_segments_no_delete BEFORE DELETE ON observation_segments
BEGIN SELECT RAISE(ABORT, 'observation_segments is append-only: DELETE refused'); END;

CREATE INDEX observations_received ON observations (received_us);

CREATE TRIGGER observations_claim_id AFTER INSERT ON observations
BEGIN INSERT INTO observation_ids (id, seq, received_us) VALUES (NEW.id, NEW.seq, NEW.received_us); END;

DROP TRIGGER observations_no_delete;
CREATE TRIGGER observations_no_delete BEFORE DELETE ON observations
WHEN NOT EXISTS (SELECT 1 FROM observation_segments s WHERE OLD.received_us >= s.lo_us AND OLD.received_us < s.hi_us
                 AND OLD.seq BETWEEN s.first_seq AND s.last_seq)
BEGIN SELECT RAISE(ABORT, 'observations is append-only: DELETE refused (only a whole archived partition goes)'); END;
