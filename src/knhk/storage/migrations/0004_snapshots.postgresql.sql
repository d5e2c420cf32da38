-- Ontology snapshots (SPEC §4): metadata (append-only), content (deletable only while never promoted, for
-- gc), the collection log (append-only), the one current pointer per sector (moves by +1 version only, never
-- deleted) and the pointer's history (append-only).
CREATE FUNCTION knhk_snapshot_keep_promoted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM snapshot_history WHERE snapshot_id = OLD.id)
       OR EXISTS (SELECT 1 FROM snapshot_pointers WHERE snapshot_id = OLD.id) THEN
        RAISE EXCEPTION 'snapshot_contents: a promoted snapshot can never be deleted'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN OLD;
END $$;

CREATE FUNCTION knhk_snapshot_pointer_one_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sector IS DISTINCT FROM OLD.sector OR NEW.version IS DISTINCT FROM OLD.version + 1 THEN
        RAISE EXCEPTION 'snapshot_pointers: a pointer moves one version at a time'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE snapshots (
    id             TEXT   PRIMARY KEY,
    sector         TEXT   NOT NULL,
    parent         TEXT   REFERENCES snapshots (id),
    content_digest TEXT   NOT NULL,
    triple_count   BIGINT NOT NULL,
    origin         TEXT   NOT NULL CHECK (origin IN ('root', 'proposal', 'operator')),
    proposal_id    TEXT,
    created_us     BIGINT NOT NULL
);
CREATE INDEX snapshots_sector ON snapshots (sector, created_us, id);
CREATE INDEX snapshots_parent ON snapshots (parent);

CREATE TABLE snapshot_contents (
    id      TEXT  PRIMARY KEY REFERENCES snapshots (id),
    content BYTEA NOT NULL
);

CREATE TABLE snapshot_collections (
    id           TEXT   PRIMARY KEY REFERENCES snapshots (id),
    sector       TEXT   NOT NULL,
    collected_us BIGINT NOT NULL
);

CREATE TABLE snapshot_pointers (
    sector      TEXT   PRIMARY KEY,
    snapshot_id TEXT   NOT NULL REFERENCES snapshots (id),
    version     BIGINT NOT NULL,
    updated_us  BIGINT NOT NULL
);

CREATE TABLE snapshot_history (
    sector                TEXT    NOT NULL,
    seq                   BIGINT  NOT NULL,
    snapshot_id           TEXT    NOT NULL REFERENCES snapshots (id),
    previous_id           TEXT    REFERENCES snapshots (id),
    action                TEXT    NOT NULL CHECK (action IN ('root', 'promote', 'rollback')),
    forced                INTEGER NOT NULL DEFAULT 0,
    validation_receipt_id TEXT,
    actor                 TEXT,
    at_us                 BIGINT  NOT NULL,
    PRIMARY KEY (sector, seq)
);
CREATE INDEX snapshot_history_snapshot ON snapshot_history (snapshot_id);

CREATE TRIGGER snapshots_append_only BEFORE UPDATE OR DELETE ON snapshots
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshots_no_truncate BEFORE TRUNCATE ON snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshot_contents_no_update BEFORE UPDATE ON snapshot_contents
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshot_contents_keep_promoted BEFORE DELETE ON snapshot_contents
    FOR EACH ROW EXECUTE FUNCTION knhk_snapshot_keep_promoted();
CREATE TRIGGER snapshot_contents_no_truncate BEFORE TRUNCATE ON snapshot_contents
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshot_collections_append_only BEFORE UPDATE OR DELETE ON snapshot_collections
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshot_collections_no_truncate BEFORE TRUNCATE ON snapshot_collections
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshot_history_append_only BEFORE UPDATE OR DELETE ON snapshot_history
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshot_history_no_truncate BEFORE TRUNCATE ON snapshot_history
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshot_pointers_no_delete BEFORE DELETE ON snapshot_pointers
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshot_pointers_no_truncate BEFORE TRUNCATE ON snapshot_pointers
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER snapshot_pointers_one_step BEFORE UPDATE ON snapshot_pointers
    FOR EACH ROW EXECUTE FUNCTION knhk_snapshot_pointer_one_step();
