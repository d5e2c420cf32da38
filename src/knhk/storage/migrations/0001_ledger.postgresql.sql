-- The receipt ledger (SPEC §8): entries, Merkle nodes, checkpoints, keyring. Append-only by trigger.
CREATE FUNCTION knhk_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE FUNCTION knhk_keys_retire_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key_id IS DISTINCT FROM OLD.key_id OR NEW.public_key IS DISTINCT FROM OLD.public_key
       OR NEW.created_us IS DISTINCT FROM OLD.created_us OR OLD.retired_us IS NOT NULL THEN
        RAISE EXCEPTION 'ledger_keys: only an unset retirement time may be set'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE ledger_entries (
    log      TEXT   NOT NULL,
    seq      BIGINT NOT NULL,
    id       TEXT   NOT NULL UNIQUE,
    ts_us    BIGINT NOT NULL,
    kind     TEXT   NOT NULL,
    sector   TEXT,
    subject  TEXT,
    key_id   TEXT   NOT NULL,
    payload  BYTEA  NOT NULL,
    sig      BYTEA  NOT NULL,
    PRIMARY KEY (log, seq)
);
CREATE INDEX ledger_entries_kind ON ledger_entries (log, kind, seq);
CREATE INDEX ledger_entries_sector ON ledger_entries (log, sector, seq);

CREATE TABLE ledger_nodes (
    log   TEXT     NOT NULL,
    level SMALLINT NOT NULL,
    idx   BIGINT   NOT NULL,
    hash  BYTEA    NOT NULL,
    PRIMARY KEY (log, level, idx)
);

CREATE TABLE ledger_checkpoints (
    log       TEXT   NOT NULL,
    tree_size BIGINT NOT NULL,
    root_hash BYTEA  NOT NULL,
    note      TEXT   NOT NULL,
    key_id    TEXT   NOT NULL,
    issued_us BIGINT NOT NULL,
    PRIMARY KEY (log, tree_size)
);

CREATE TABLE ledger_keys (
    key_id     TEXT   PRIMARY KEY,
    public_key BYTEA  NOT NULL,
    created_us BIGINT NOT NULL,
    retired_us BIGINT
);

CREATE TABLE ledger_key_use (
    log            TEXT   NOT NULL,
    valid_from_seq BIGINT NOT NULL,
    key_id         TEXT   NOT NULL REFERENCES ledger_keys (key_id),
    PRIMARY KEY (log, valid_from_seq)
);

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_nodes_append_only BEFORE UPDATE OR DELETE ON ledger_nodes
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_nodes_no_truncate BEFORE TRUNCATE ON ledger_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_key_use_append_only BEFORE UPDATE OR DELETE ON ledger_key_use
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_key_use_no_truncate BEFORE TRUNCATE ON ledger_key_use
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_keys_no_delete BEFORE DELETE ON ledger_keys
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_keys_no_truncate BEFORE TRUNCATE ON ledger_keys
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_keys_retire_only BEFORE UPDATE ON ledger_keys
    FOR EACH ROW EXECUTE FUNCTION knhk_keys_retire_only();
