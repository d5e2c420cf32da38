-- PHI data keys (knhk.storage.fields): one per sector and month of ingest, stored only wrapped by a key-encryption
-- key that lives outside the database. Re-wrapping on rotation updates kek_id and wrapped; a data key is never
-- deleted (its PHI values would be lost), so DELETE is refused, and id and scope never change.
CREATE TABLE data_keys (
    id         TEXT    PRIMARY KEY,
    scope      TEXT    NOT NULL UNIQUE,
    kek_id     TEXT    NOT NULL,
    wrapped    TEXT    NOT NULL,
    created_us INTEGER NOT NULL
);

CREATE TRIGGER data_keys_no_delete BEFORE DELETE ON data_keys
BEGIN SELECT RAISE(ABORT, 'data_keys: DELETE refused (PHI sealed under the key would be lost)'); END;
CREATE TRIGGER data_keys_fixed_identity BEFORE UPDATE OF id, scope, created_us ON data_keys
BEGIN SELECT RAISE(ABORT, 'data_keys: only kek_id and wrapped may change'); END;
