-- Ontology snapshots (SPEC §4): metadata (append-only), content (deletable only while never promoted, for
-- gc), the collection log (append-only), the one current pointer per sector (moves by +1 version only, never
-- deleted) and the pointer's history (append-only).
CREATE TABLE snapshots (
    id             TEXT    PRIMARY KEY,
    sector         TEXT    NOT NULL,
    parent         TEXT    REFERENCES snapshots (id),
    content_digest TEXT    NOT NULL,
    triple_count   INTEGER NOT NULL,
    origin         TEXT    NOT NULL CHECK (origin IN ('root', 'proposal', 'operator')),
    proposal_id    TEXT,
    created_us     INTEGER NOT NULL
);
CREATE INDEX snapshots_sector ON snapshots (sector, created_us, id);
CREATE INDEX snapshots_parent ON snapshots (parent);

CREATE TABLE snapshot_contents (
    id      TEXT PRIMARY KEY REFERENCES snapshots (id),
    content BLOB NOT NULL
);

CREATE TABLE snapshot_collections (
    id           TEXT    PRIMARY KEY REFERENCES snapshots (id),
    sector       TEXT    NOT NULL,
    collected_us INTEGER NOT NULL
);

CREATE TABLE snapshot_pointers (
    sector      TEXT    PRIMARY KEY,
    snapshot_id TEXT    NOT NULL REFERENCES snapshots (id),
    version     INTEGER NOT NULL,
    updated_us  INTEGER NOT NULL
);

CREATE TABLE snapshot_history (
    sector                TEXT    NOT NULL,
    seq                   INTEGER NOT NULL,
    snapshot_id           TEXT    NOT NULL REFERENCES snapshots (id),
    previous_id           TEXT    REFERENCES snapshots (id),
    action                TEXT    NOT NULL CHECK (action IN ('root', 'promote', 'rollback')),
    forced                INTEGER NOT NULL DEFAULT 0,
    validation_receipt_id TEXT,
    actor                 TEXT,
    at_us                 INTEGER NOT NULL,
    PRIMARY KEY (sector, seq)
);
CREATE INDEX snapshot_history_snapshot ON snapshot_history (snapshot_id);

CREATE TRIGGER snapshots_no_update BEFORE UPDATE ON snapshots
BEGIN SELECT RAISE(ABORT, 'snapshots is append-only: UPDATE refused'); END;
CREATE TRIGGER snapshots_no_delete BEFORE DELETE ON snapshots
BEGIN SELECT RAISE(ABORT, 'snapshots is append-only: DELETE refused'); END;
CREATE TRIGGER snapshot_contents_no_update BEFORE UPDATE ON snapshot_contents
BEGIN SELECT RAISE(ABORT, 'snapshot_contents is immutable: UPDATE refused'); END;
CREATE TRIGGER snapshot_contents_keep_promoted BEFORE DELETE ON snapshot_contents
WHEN EXISTS (SELECT 1 FROM snapshot_history WHERE snapshot_id = OLD.id)
  OR EXISTS (SELECT 1 FROM snapshot_pointers WHERE snapshot_id = OLD.id)
BEGIN SELECT RAISE(ABORT, 'snapshot_contents: a promoted snapshot can never be deleted'); END;
CREATE TRIGGER snapshot_collections_no_update BEFORE UPDATE ON snapshot_collections
BEGIN SELECT RAISE(ABORT, 'snapshot_collections is append-only: UPDATE refused'); END;
CREATE TRIGGER snapshot_collections_no_delete BEFORE DELETE ON snapshot_collections
BEGIN SELECT RAISE(ABORT, 'snapshot_collections is append-only: DELETE refused'); END;
CREATE TRIGGER snapshot_history_no_update BEFORE UPDATE ON snapshot_history
BEGIN SELECT RAISE(ABORT, 'snapshot_history is append-only: UPDATE refused'); END;
CREATE TRIGGER snapshot_history_no_delete BEFORE DELETE ON snapshot_history
BEGIN SELECT RAISE(ABORT, 'snapshot_history is append-only: DELETE refused'); END;
CREATE TRIGGER snapshot_pointers_no_delete BEFORE DELETE ON snapshot_pointers
BEGIN SELECT RAISE(ABORT, 'snapshot_pointers: a sector never loses its current pointer: DELETE refused'); END;
CREATE TRIGGER snapshot_pointers_one_step BEFORE UPDATE ON snapshot_pointers
WHEN NEW.sector IS NOT OLD.sector OR NEW.version IS NOT OLD.version + 1
BEGIN SELECT RAISE(ABORT, 'snapshot_pointers: a pointer moves one version at a time'); END;
