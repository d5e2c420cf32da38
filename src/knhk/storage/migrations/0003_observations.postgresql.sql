-- Observations (SPEC §2): append-only by trigger; seq is the ingest order (cursors), id the public key.
CREATE TABLE observations (
    seq          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    sector       TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    ts_us        BIGINT  NOT NULL,
    received_us  BIGINT  NOT NULL,
    value        TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    conforming   BOOLEAN NOT NULL,
    issues       TEXT    NOT NULL,
    skewed       BOOLEAN NOT NULL,
    client_id    BOOLEAN NOT NULL,
    ts_defaulted BOOLEAN NOT NULL,
    client       TEXT
);
CREATE INDEX observations_sector_ts ON observations (sector, ts_us);
CREATE INDEX observations_sector_type_ts ON observations (sector, event_type, ts_us);
CREATE INDEX observations_sector_seq ON observations (sector, seq);

CREATE TRIGGER observations_append_only BEFORE UPDATE OR DELETE ON observations
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER observations_no_truncate BEFORE TRUNCATE ON observations
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();

-- Learned confidence thresholds per sector and pattern type (SPEC §3 learning); mutable by design.
CREATE TABLE detector_thresholds (
    sector          TEXT     NOT NULL,
    pattern_type    TEXT     NOT NULL,
    threshold_milli SMALLINT NOT NULL,
    accepted        INTEGER  NOT NULL,
    rejected        INTEGER  NOT NULL,
    updated_us      BIGINT   NOT NULL,
    PRIMARY KEY (sector, pattern_type)
);
