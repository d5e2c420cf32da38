-- The ledger's transactional outbox: entry drafts written in the same transaction as the change they record (an
-- observation's guard receipts, the per-minute ingest audit counts), drained into the ledger by the sequencer.
-- A row is written once and marked once: seq (the log's seq of the entry it became) goes from NULL to a value in
-- the sequencer's transaction that inserts that entry; nothing else ever changes, and nothing is deleted.
-- count: NULL for one entry per row; else the row is a count, and rows with equal drafts are drained into one
-- audit entry whose metadata count is their sum. due_us: not drained before then (a count: after its minute).
-- origin: the process that staged it (at shutdown a process drains its own counts early).
CREATE FUNCTION knhk_outbox_mark_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq IS NOT NULL OR NEW.seq IS NULL
       OR (NEW.id, NEW.log, NEW.draft, NEW.count, NEW.due_us, NEW.created_us, NEW.origin)
          IS DISTINCT FROM (OLD.id, OLD.log, OLD.draft, OLD.count, OLD.due_us, OLD.created_us, OLD.origin) THEN
        RAISE EXCEPTION 'ledger_outbox: only an unset seq may be set'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE ledger_outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    log        TEXT   NOT NULL,
    draft      TEXT   NOT NULL,
    count      BIGINT,
    due_us     BIGINT NOT NULL,
    created_us BIGINT NOT NULL,
    origin     TEXT   NOT NULL,
    seq        BIGINT
);
CREATE INDEX ledger_outbox_pending ON ledger_outbox (due_us, id) WHERE seq IS NULL;

CREATE TRIGGER ledger_outbox_mark_once BEFORE UPDATE ON ledger_outbox
    FOR EACH ROW EXECUTE FUNCTION knhk_outbox_mark_once();
CREATE TRIGGER ledger_outbox_append_only BEFORE DELETE ON ledger_outbox
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER ledger_outbox_no_truncate BEFORE TRUNCATE ON ledger_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
