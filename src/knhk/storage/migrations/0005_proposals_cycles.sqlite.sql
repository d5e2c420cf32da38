-- Proposals, validations, approvals and cycle records (SPEC §1, §5–§7). Immutable records are append-only;
-- the one mutable row per proposal is its current status.
CREATE TABLE proposals (
    id           TEXT    PRIMARY KEY,
    sector       TEXT    NOT NULL,
    base_id      TEXT    NOT NULL,
    candidate_id TEXT    NOT NULL,
    delta        TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    pattern      TEXT,
    rationale    TEXT    NOT NULL,
    author       TEXT    NOT NULL,
    proposer     TEXT    NOT NULL,
    cost         INTEGER NOT NULL,
    summary      TEXT    NOT NULL,
    created_us   INTEGER NOT NULL
);
CREATE INDEX proposals_sector ON proposals (sector, created_us);

CREATE TABLE proposal_status (
    proposal_id  TEXT    PRIMARY KEY REFERENCES proposals (id),
    status       TEXT    NOT NULL,
    reason       TEXT,
    held_at_us   INTEGER,
    updated_us   INTEGER NOT NULL
);
CREATE INDEX proposal_status_status ON proposal_status (status);

CREATE TABLE validations (
    id           TEXT    PRIMARY KEY,
    proposal_id  TEXT    NOT NULL REFERENCES proposals (id),
    snapshot_id  TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    report       TEXT    NOT NULL,
    receipt_id   TEXT    NOT NULL,
    created_us   INTEGER NOT NULL
);
CREATE INDEX validations_proposal ON validations (proposal_id, created_us);

CREATE TABLE approvals (
    id           TEXT    PRIMARY KEY,
    proposal_id  TEXT    NOT NULL REFERENCES proposals (id),
    subject      TEXT    NOT NULL,
    roles        TEXT    NOT NULL,
    sector_attr  TEXT,
    decision     TEXT    NOT NULL,
    comment      TEXT,
    at_us        INTEGER NOT NULL,
    UNIQUE (proposal_id, subject)
);

CREATE TABLE cycles (
    id           TEXT    PRIMARY KEY,
    sector       TEXT    NOT NULL,
    started_us   INTEGER NOT NULL,
    finished_us  INTEGER NOT NULL,
    outcome      TEXT    NOT NULL,
    counts       TEXT    NOT NULL,
    receipt_ids  TEXT    NOT NULL,
    error        TEXT
);
CREATE INDEX cycles_sector ON cycles (sector, started_us);

CREATE TRIGGER proposals_no_update BEFORE UPDATE ON proposals
BEGIN SELECT RAISE(ABORT, 'proposals is append-only: UPDATE refused'); END;
CREATE TRIGGER proposals_no_delete BEFORE DELETE ON proposals
BEGIN SELECT RAISE(ABORT, 'proposals is append-only: DELETE refused'); END;
CREATE TRIGGER validations_no_update BEFORE UPDATE ON validations
BEGIN SELECT RAISE(ABORT, 'validations is append-only: UPDATE refused'); END;
CREATE TRIGGER validations_no_delete BEFORE DELETE ON validations
BEGIN SELECT RAISE(ABORT, 'validations is append-only: DELETE refused'); END;
CREATE TRIGGER approvals_no_update BEFORE UPDATE ON approvals
BEGIN SELECT RAISE(ABORT, 'approvals is append-only: UPDATE refused'); END;
CREATE TRIGGER approvals_no_delete BEFORE DELETE ON approvals
BEGIN SELECT RAISE(ABORT, 'approvals is append-only: DELETE refused'); END;
CREATE TRIGGER cycles_no_update BEFORE UPDATE ON cycles
BEGIN SELECT RAISE(ABORT, 'cycles is append-only: UPDATE refused'); END;
CREATE TRIGGER cycles_no_delete BEFORE DELETE ON cycles
BEGIN SELECT RAISE(ABORT, 'cycles is append-only: DELETE refused'); END;
