-- The ledger's transactional outbox: entry drafts written in the same transaction as the change they record (an
-- observation's guard receipts, the per-minute ingest audit counts), drained into the ledger by the sequencer.
-- A row is written once and marked once: seq (the log's seq of the entry it became) goes from NULL to a value in
-- the sequencer's transaction that inserts that entry; nothing else ever changes, and nothing is deleted.
-- count: NULL for one entry per row; else the row is a count, and rows with equal drafts are drained into one
-- audit entry whose metadata count is their sum. due_us: not drained before then (a count: after its minute).
-- origin: the process that staged it (at shutdown a process drains its own counts early).
CREATE TABLE ledger_outbox (
    id         INTEGER PRIMARY KEY,
    log        TEXT    NOT NULL,
    draft      TEXT    NOT NULL,
    count      INTEGER,
    due_us     INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    origin     TEXT    NOT NULL,
    seq        INTEGER
);
CREATE INDEX ledger_outbox_pending ON ledger_outbox (due_us, id) WHERE seq IS NULL;

CREATE TRIGGER ledger_outbox_mark_once BEFORE UPDATE ON ledger_outbox
WHEN OLD.seq IS NOT NULL OR NEW.seq IS NULL OR NEW.id IS NOT OLD.id OR NEW.log IS NOT OLD.log
  OR NEW.draft IS NOT OLD.draft OR NEW.count IS NOT OLD.count OR NEW.due_us IS NOT OLD.due_us
  OR NEW.created_us IS NOT OLD.created_us OR NEW.origin IS NOT OLD.origin
BEGIN SELECT RAISE(ABORT, 'ledger_outbox: only an unset seq may be set'); END;
CREATE TRIGGER ledger_outbox_no_delete BEFORE DELETE ON ledger_outbox
BEGIN SELECT RAISE(ABORT, 'ledger_outbox is append-only: DELETE refused'); END;
CREATE TRIGGER ledger_outbox_no_replace BEFORE INSERT ON ledger_outbox
WHEN EXISTS (SELECT 1 FROM ledger_outbox WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'ledger_outbox is append-only: a row with this id exists'); END;
