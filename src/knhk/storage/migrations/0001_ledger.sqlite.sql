-- The receipt ledger (SPEC §8): entries, Merkle nodes, checkpoints, keyring. Append-only by trigger.
CREATE TABLE ledger_entries (
    log      TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    id       TEXT    NOT NULL UNIQUE,
    ts_us    INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    sector   TEXT,
    subject  TEXT,
    key_id   TEXT    NOT NULL,
    payload  BLOB    NOT NULL,
    sig      BLOB    NOT NULL,
    PRIMARY KEY (log, seq)
);
CREATE INDEX ledger_entries_kind ON ledger_entries (log, kind, seq);
CREATE INDEX ledger_entries_sector ON ledger_entries (log, sector, seq);

CREATE TABLE ledger_nodes (
    log   TEXT    NOT NULL,
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (log, level, idx)
) WITHOUT ROWID;

CREATE TABLE ledger_checkpoints (
    log       TEXT    NOT NULL,
    tree_size INTEGER NOT NULL,
    root_hash BLOB    NOT NULL,
    note      TEXT    NOT NULL,
    key_id    TEXT    NOT NULL,
    issued_us INTEGER NOT NULL,
    PRIMARY KEY (log, tree_size)
);

CREATE TABLE ledger_keys (
    key_id     TEXT    PRIMARY KEY,
    public_key BLOB    NOT NULL,
    created_us INTEGER NOT NULL,
    retired_us INTEGER
);

CREATE TABLE ledger_key_use (
    log            TEXT    NOT NULL,
    valid_from_seq INTEGER NOT NULL,
    key_id         TEXT    NOT NULL REFERENCES ledger_keys (key_id),
    PRIMARY KEY (log, valid_from_seq)
);

CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: UPDATE refused'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: DELETE refused'); END;
CREATE TRIGGER ledger_nodes_no_update BEFORE UPDATE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'ledger_nodes is append-only: UPDATE refused'); END;
CREATE TRIGGER ledger_nodes_no_delete BEFORE DELETE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'ledger_nodes is append-only: DELETE refused'); END;
CREATE TRIGGER ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger_checkpoints is append-only: UPDATE refused'); END;
CREATE TRIGGER ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger_checkpoints is append-only: DELETE refused'); END;
CREATE TRIGGER ledger_key_use_no_update BEFORE UPDATE ON ledger_key_use
BEGIN SELECT RAISE(ABORT, 'ledger_key_use is append-only: UPDATE refused'); END;
CREATE TRIGGER ledger_key_use_no_delete BEFORE DELETE ON ledger_key_use
BEGIN SELECT RAISE(ABORT, 'ledger_key_use is append-only: DELETE refused'); END;
-- Keys are kept forever; only the retirement time may be set, once.
CREATE TRIGGER ledger_keys_no_delete BEFORE DELETE ON ledger_keys
BEGIN SELECT RAISE(ABORT, 'ledger_keys keeps every key forever: DELETE refused'); END;
CREATE TRIGGER ledger_keys_retire_only BEFORE UPDATE ON ledger_keys
WHEN NEW.key_id IS NOT OLD.key_id OR NEW.public_key IS NOT OLD.public_key
  OR NEW.created_us IS NOT OLD.created_us OR OLD.retired_us IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'ledger_keys: only an unset retirement time may be set'); END;
-- INSERT OR REPLACE deletes the conflicting row without firing DELETE triggers (unless a connection turns
-- on recursive_triggers), so refuse inserts that collide with a stored row. Entries, nodes and key uses
-- abort; checkpoints and keys, whose writers insert with ON CONFLICT DO NOTHING, keep the stored row.
CREATE TRIGGER ledger_entries_no_replace BEFORE INSERT ON ledger_entries
WHEN EXISTS (SELECT 1 FROM ledger_entries WHERE log = NEW.log AND seq = NEW.seq)
  OR EXISTS (SELECT 1 FROM ledger_entries WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: an entry with this seq or id exists'); END;
CREATE TRIGGER ledger_nodes_no_replace BEFORE INSERT ON ledger_nodes
WHEN EXISTS (SELECT 1 FROM ledger_nodes WHERE log = NEW.log AND level = NEW.level AND idx = NEW.idx)
BEGIN SELECT RAISE(ABORT, 'ledger_nodes is append-only: this node exists'); END;
CREATE TRIGGER ledger_key_use_no_replace BEFORE INSERT ON ledger_key_use
WHEN EXISTS (SELECT 1 FROM ledger_key_use WHERE log = NEW.log AND valid_from_seq = NEW.valid_from_seq)
BEGIN SELECT RAISE(ABORT, 'ledger_key_use is append-only: this key use exists'); END;
CREATE TRIGGER ledger_checkpoints_no_replace BEFORE INSERT ON ledger_checkpoints
WHEN EXISTS (SELECT 1 FROM ledger_checkpoints WHERE log = NEW.log AND tree_size = NEW.tree_size)
BEGIN SELECT RAISE(IGNORE); END;
CREATE TRIGGER ledger_keys_no_replace BEFORE INSERT ON ledger_keys
WHEN EXISTS (SELECT 1 FROM ledger_keys WHERE key_id = NEW.key_id)
BEGIN SELECT RAISE(IGNORE); END;
