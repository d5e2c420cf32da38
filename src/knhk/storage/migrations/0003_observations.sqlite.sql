-- Observations (SPEC §2): append-only by trigger; seq is the ingest order (cursors), id the public key.
CREATE TABLE observations (
    seq          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    sector       TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    ts_us        INTEGER NOT NULL,
    received_us  INTEGER NOT NULL,
    value        TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    conforming   INTEGER NOT NULL,
    issues       TEXT    NOT NULL,
    skewed       INTEGER NOT NULL,
    client_id    INTEGER NOT NULL,
    ts_defaulted INTEGER NOT NULL,
    client       TEXT
);
CREATE INDEX observations_sector_ts ON observations (sector, ts_us);
CREATE INDEX observations_sector_type_ts ON observations (sector, event_type, ts_us);
CREATE INDEX observations_sector_seq ON observations (sector, seq);

CREATE TRIGGER observations_no_update BEFORE UPDATE ON observations
BEGIN SELECT RAISE(ABORT, 'observations is append-only: UPDATE refused'); END;
CREATE TRIGGER observations_no_delete BEFORE DELETE ON observations
BEGIN SELECT RAISE(ABORT, 'observations is append-only: DELETE refused'); END;

-- Learned confidence thresholds per sector and pattern type (SPEC §3 learning); mutable by design.
CREATE TABLE detector_thresholds (
    sector          TEXT    NOT NULL,
    pattern_type    TEXT    NOT NULL,
    threshold_milli INTEGER NOT NULL,
    accepted        INTEGER NOT NULL,
    rejected        INTEGER NOT NULL,
    updated_us      INTEGER NOT NULL,
    PRIMARY KEY (sector, pattern_type)
);
