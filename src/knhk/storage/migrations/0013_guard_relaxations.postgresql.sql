-- Guard relaxation requests (SPEC §7): a time-boxed, single-use window in which one guard of one sector is off.
-- The request and its approvals are append-only; the one mutable row per request is its current status (and,
-- once granted, its window).
CREATE TABLE relaxations (
    id           TEXT    PRIMARY KEY,
    sector       TEXT    NOT NULL,
    guard_id     TEXT    NOT NULL,
    criticality  TEXT    NOT NULL,
    snapshot_id  TEXT    NOT NULL,
    author       TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    duration_s   BIGINT NOT NULL,
    quorum       BIGINT  NOT NULL,
    min_review_s BIGINT NOT NULL,
    requested_us BIGINT NOT NULL
);
CREATE INDEX relaxations_sector ON relaxations (sector, requested_us);

CREATE TABLE relaxation_status (
    relaxation_id TEXT    PRIMARY KEY REFERENCES relaxations (id),
    sector        TEXT    NOT NULL,
    guard_id      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    starts_us     BIGINT,
    ends_us       BIGINT,
    note          TEXT,
    updated_us    BIGINT NOT NULL
);
CREATE INDEX relaxation_status_open ON relaxation_status (sector, status);

CREATE TABLE relaxation_approvals (
    id            TEXT    PRIMARY KEY,
    relaxation_id TEXT    NOT NULL REFERENCES relaxations (id),
    subject       TEXT    NOT NULL,
    roles         TEXT    NOT NULL,
    sector_attr   TEXT,
    decision      TEXT    NOT NULL,
    comment       TEXT,
    at_us         BIGINT NOT NULL,
    UNIQUE (relaxation_id, subject)
);

CREATE TRIGGER relaxations_append_only BEFORE UPDATE OR DELETE ON relaxations
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER relaxations_no_truncate BEFORE TRUNCATE ON relaxations
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER relaxation_approvals_append_only BEFORE UPDATE OR DELETE ON relaxation_approvals
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER relaxation_approvals_no_truncate BEFORE TRUNCATE ON relaxation_approvals
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
