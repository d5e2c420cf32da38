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
