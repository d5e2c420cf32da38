-- Observations partitioned by month of ingest (received_us, UTC) for retention (SPEC §11, knhk.observations.retention):
-- a month older than the retention is archived (compressed JSON lines + a signed segment manifest that is a ledger
-- entry) and then dropped whole. Rows are never deleted one by one: the row triggers stay, and the only way a row
-- leaves is knhk_drop_observation_partition, which drops a whole partition only once its archived segment is
-- registered in observation_segments (written after the manifest's ledger entry) and holds exactly its rows.
--
-- A partitioned table's unique keys must contain the partition key, so observation ids are kept unique by
-- observation_ids (id → seq, received_us), filled by a statement trigger of every INSERT or COPY into
-- observations and never dropped: an id stays used after its observation is archived (and locates its segment).
-- The old table is converted in place (a one-off, inside the migration's transaction): renamed, copied into the
-- partitioned table (sequence numbers kept, the identity continued), then dropped.

CREATE TABLE observation_ids (
    id          TEXT   PRIMARY KEY,
    seq         BIGINT NOT NULL,
    received_us BIGINT NOT NULL
);
CREATE TRIGGER observation_ids_append_only BEFORE UPDATE OR DELETE ON observation_ids
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER observation_ids_no_truncate BEFORE TRUNCATE ON observation_ids
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();

-- One row per archived (and then dropped) partition: the segment manifest's facts and its ledger entry.
CREATE TABLE observation_segments (
    id              TEXT   PRIMARY KEY,
    period          TEXT   NOT NULL,
    lo_us           BIGINT NOT NULL,
    hi_us           BIGINT NOT NULL,
    count           BIGINT NOT NULL,
    first_seq       BIGINT,
    last_seq        BIGINT,
    merkle_root     TEXT   NOT NULL,
    manifest_sha256 TEXT   NOT NULL,
    ledger_log      TEXT   NOT NULL,
    ledger_seq      BIGINT NOT NULL,
    archive         TEXT   NOT NULL,
    created_us      BIGINT NOT NULL
);
CREATE INDEX observation_segments_period ON observation_segments (lo_us);
CREATE TRIGGER observation_segments_append_only BEFORE UPDATE OR DELETE ON observation_segments
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER observation_segments_no_truncate BEFORE TRUNCATE ON observation_segments
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();

-- The one-off conversion: the old table is only copied and then dropped in this same transaction (the new
-- table's indexes and key get new names, so nothing else is renamed).
-- squawk-ignore renaming-table
ALTER TABLE observations RENAME TO observations_unpartitioned;

CREATE TABLE observations (
    seq          BIGINT  GENERATED ALWAYS AS IDENTITY,
    id           TEXT    NOT NULL,
    sector       TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    ts_us        BIGINT  NOT NULL,
    received_us  BIGINT  NOT NULL,
    value        TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    conforming   BOOLEAN NOT NULL,
    issues       TEXT    NOT NULL,
    skewed       BOOLEAN NOT NULL,
    client_id    BOOLEAN NOT NULL,
    ts_defaulted BOOLEAN NOT NULL,
    client       TEXT,
    CONSTRAINT observations_part_pkey PRIMARY KEY (seq, received_us)
) PARTITION BY RANGE (received_us);
CREATE INDEX observations_part_id ON observations (id);
CREATE INDEX observations_part_sector_ts ON observations (sector, ts_us);
CREATE INDEX observations_part_sector_type_ts ON observations (sector, event_type, ts_us);
CREATE INDEX observations_part_sector_seq ON observations (sector, seq);
-- the safety net: a row whose month has no partition (not created in time) lands here; never dropped
CREATE TABLE observations_default PARTITION OF observations DEFAULT;

CREATE TRIGGER observations_append_only BEFORE UPDATE OR DELETE ON observations
    FOR EACH ROW EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER observations_no_truncate BEFORE TRUNCATE ON observations
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();
CREATE TRIGGER observations_no_truncate BEFORE TRUNCATE ON observations_default
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_refuse_change();

-- Every inserted (or copied) row's id is claimed in observation_ids in the same statement: a used id fails the
-- whole statement with a unique violation (observation_ids_pkey). SECURITY DEFINER: the application role
-- needs no privilege on observation_ids beyond reading it.
CREATE FUNCTION knhk_claim_observation_ids() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO observation_ids (id, seq, received_us) SELECT id, seq, received_us FROM claimed;
    RETURN NULL;
END $$;
CREATE TRIGGER observations_claim_ids AFTER INSERT ON observations REFERENCING NEW TABLE AS claimed
    FOR EACH STATEMENT EXECUTE FUNCTION knhk_claim_observation_ids();

-- The monthly partitions from the month of from_us on, months ahead (existing ones are left alone). A month
-- already archived is never re-created (a row of it, from a clock set back, lands in the default partition), nor
-- one of which the default partition already holds rows (PostgreSQL would refuse; those rows stay there).
-- SECURITY DEFINER: the service (application role, no DDL rights) keeps the partitions ahead of time.
CREATE FUNCTION knhk_observation_partitions(from_us BIGINT, months INTEGER) RETURNS INTEGER LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT SET lock_timeout = '2s' AS $$
DECLARE
    first_month DATE := date_trunc('month', to_timestamp(from_us / 1000000.0) AT TIME ZONE 'UTC')::date;
    m DATE;
    lo BIGINT;
    hi BIGINT;
    name TEXT;
    made INTEGER := 0;
BEGIN
    IF months < 0 OR months > 1200 THEN
        RAISE EXCEPTION 'knhk_observation_partitions: months must lie in 0..1200, not %', months
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('knhk.observation_partitions'));
    FOR i IN 0 .. months LOOP
        m := (first_month + make_interval(months => i))::date;
        name := 'observations_p' || to_char(m, 'YYYYMM');
        CONTINUE WHEN to_regclass(name) IS NOT NULL;
        lo := (extract(epoch FROM (m::timestamp AT TIME ZONE 'UTC')) * 1000000)::bigint;
        hi := (extract(epoch FROM ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC')) * 1000000)::bigint;
        CONTINUE WHEN EXISTS (SELECT 1 FROM observation_segments WHERE lo_us = lo);
        IF EXISTS (SELECT 1 FROM observations_default WHERE received_us >= lo AND received_us < hi) THEN
            RAISE WARNING 'observations of % are in the default partition; no partition is made for that month',
                to_char(m, 'YYYY-MM');
            CONTINUE;
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF observations FOR VALUES FROM (%s) TO (%s)', name, lo, hi);
        EXECUTE format('CREATE TRIGGER observations_no_truncate BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION knhk_refuse_change()', name);
        made := made + 1;
    END LOOP;
    RETURN made;
END $$;

-- Detach and drop the partition of an archived segment: only when the segment is registered, its partition is
-- attached with exactly the segment's bounds, and, once detached (no insert can reach it any more), holds
-- exactly the segment's rows. Anything else raises and the caller's transaction rolls back whole.
CREATE FUNCTION knhk_drop_observation_partition(segment TEXT) RETURNS BIGINT LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT SET lock_timeout = '5s' AS $$
DECLARE
    s observation_segments%ROWTYPE;
    name TEXT;
    bound TEXT;
    n BIGINT;
    a BIGINT;
    b BIGINT;
BEGIN
    SELECT * INTO s FROM observation_segments WHERE id = segment;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'observation segment % is not registered: nothing is dropped before it is archived', segment
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ledger_entries WHERE log = s.ledger_log AND seq = s.ledger_seq
                   AND kind = 'observations.archived' AND subject = s.id) THEN
        RAISE EXCEPTION 'observation segment % has no observations.archived entry at %/%', segment, s.ledger_log,
            s.ledger_seq USING ERRCODE = 'restrict_violation';
    END IF;
    name := 'observations_p' || replace(s.period, '-', '');
    SELECT pg_get_expr(c.relpartbound, c.oid) INTO bound FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
        WHERE c.relname = name AND i.inhparent = 'observations'::regclass;
    IF bound IS DISTINCT FROM format('FOR VALUES FROM (''%s'') TO (''%s'')', s.lo_us, s.hi_us)
       AND bound IS DISTINCT FROM format('FOR VALUES FROM (%s) TO (%s)', s.lo_us, s.hi_us) THEN
        RAISE EXCEPTION 'partition % of segment % is not attached with the bounds [%, %) (found %)', name, segment,
            s.lo_us, s.hi_us, coalesce(bound, 'none') USING ERRCODE = 'restrict_violation';
    END IF;
    EXECUTE format('ALTER TABLE observations DETACH PARTITION %I', name);
    EXECUTE format('SELECT count(*), min(seq), max(seq) FROM %I', name) INTO n, a, b;
    IF n <> s.count OR a IS DISTINCT FROM s.first_seq OR b IS DISTINCT FROM s.last_seq THEN
        RAISE EXCEPTION 'partition % holds % rows (seq % to %), its archived segment % holds % (seq % to %)',
            name, n, a, b, segment, s.count, s.first_seq, s.last_seq USING ERRCODE = 'restrict_violation';
    END IF;
    EXECUTE format('DROP TABLE %I', name);
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION knhk_drop_observation_partition(TEXT) FROM PUBLIC;

-- the conversion: partitions for every month the old rows span and the next three, then the rows (with their
-- sequence numbers; the statement trigger claims their ids), the identity continued after the highest seq
DO $$
DECLARE
    now_us BIGINT := (extract(epoch FROM now()) * 1000000)::bigint;
    lo BIGINT;
    hi BIGINT;
    span INTERVAL;
BEGIN
    SELECT coalesce(min(received_us), now_us), greatest(coalesce(max(received_us), now_us), now_us) INTO lo, hi
        FROM observations_unpartitioned;
    span := age(date_trunc('month', to_timestamp(hi / 1000000.0) AT TIME ZONE 'UTC'),
                date_trunc('month', to_timestamp(lo / 1000000.0) AT TIME ZONE 'UTC'));
    PERFORM knhk_observation_partitions(
        lo, least((extract(year FROM span) * 12 + extract(month FROM span))::integer + 3, 1200));
END $$;

INSERT INTO observations (seq, id, sector, event_type, ts_us, received_us, value, metadata, content_hash,
                          conforming, issues, skewed, client_id, ts_defaulted, client)
    OVERRIDING SYSTEM VALUE
    SELECT seq, id, sector, event_type, ts_us, received_us, value, metadata, content_hash, conforming, issues,
           skewed, client_id, ts_defaulted, client
    FROM observations_unpartitioned ORDER BY seq;
SELECT setval(pg_get_serial_sequence('observations', 'seq'), coalesce(max(seq), 1), max(seq) IS NOT NULL)
FROM observations;

-- privileges the application role held on the old table carry over (knhk db grant-app-role grants the rest)
DO $$
DECLARE r RECORD;
BEGIN
    FOR r IN SELECT DISTINCT grantee, privilege_type FROM information_schema.role_table_grants
             WHERE table_schema = current_schema() AND table_name = 'observations_unpartitioned'
               AND grantee <> current_user LOOP
        EXECUTE format('GRANT %s ON observations TO %I', r.privilege_type, r.grantee);
        EXECUTE format('GRANT SELECT ON observation_ids, observation_segments TO %I', r.grantee);
    END LOOP;
END $$;

-- the old table, copied above, goes (squawk: dropping a table clients use; here nothing uses it any more)
-- squawk-ignore ban-drop-table
DROP TABLE observations_unpartitioned;
