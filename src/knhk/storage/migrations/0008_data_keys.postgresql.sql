-- PHI data keys (knhk.storage.fields): one per sector and month of ingest, stored only wrapped by a key-encryption
-- key that lives outside the database. Re-wrapping on rotation updates kek_id and wrapped; a data key is never
-- deleted (its PHI values would be lost), so DELETE and TRUNCATE are refused, and id and scope never change.
CREATE TABLE data_keys (
    id         TEXT   PRIMARY KEY,
    scope      TEXT   NOT NULL UNIQUE,
    kek_id     TEXT   NOT NULL,
    wrapped    TEXT   NOT NULL,
    created_us BIGINT NOT NULL
);

CREATE FUNCTION knhk_data_keys_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.scope = OLD.scope AND NEW.created_us = OLD.created_us THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'data_keys: % refused (only kek_id and wrapped may change; PHI sealed under a key would be lost)', TG_OP;
END $$;

CREATE TRIGGER data_keys_guard BEFORE UPDATE OR DELETE ON data_keys
    FOR EACH ROW EXECUTE FUNCTION knhk_data_keys_guard();
CREATE TRIGGER data_keys_no_truncate BEFORE TRUNCATE ON data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
