-- The counts behind /metrics, /readyz, the admin API and the dashboard, kept as the
-- rows change: counting them (count(*)) read every delivery and every message at each
-- scrape, a cost that grows with retention. Several processes commit at once, so a
-- count is not one row that every commit would update (and lock until it commits):
-- each statement that changes rows adds rows of changes, one per destination and
-- state it touched, and a reader sums them. compact_counts folds them into one row
-- per group now and then (PostgresStore), so that the sum stays small.

CREATE TABLE delivery_count_changes (
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    change BIGINT NOT NULL
);
CREATE TABLE message_count_changes (change BIGINT NOT NULL);
-- Each fold leaves every row it read dead: vacuum them by count, not by a share of a
-- table that a fold keeps small, so that a read never scans many.
ALTER TABLE delivery_count_changes SET (autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000);
ALTER TABLE message_count_changes SET (autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000);

-- Statement triggers with transition tables: one aggregate per statement, not a row
-- of changes per row. Each function keeps the migration's search_path, so that a
-- session with another one still finds the tables of changes. (An UPDATE trigger with transition tables may not name its
-- columns, so claims and lease renewals run it too: their states do not change and it
-- adds nothing.)
-- An insert or a delete: the rows it made or removed (changed_rows), each counted as
-- the trigger's argument (1 or -1).
CREATE FUNCTION count_changed_deliveries() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO delivery_count_changes (destination, state, change)
    SELECT destination, state, TG_ARGV[0]::bigint * count(*) FROM changed_rows
    GROUP BY destination, state;
    RETURN NULL;
END $$;

CREATE FUNCTION count_updated_deliveries() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO delivery_count_changes (destination, state, change)
    SELECT destination, state, sum(change) FROM (
        SELECT destination, state, -1 AS change FROM old_rows
        UNION ALL
        SELECT destination, state, 1 FROM new_rows
    ) AS moved
    GROUP BY destination, state HAVING sum(change) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION count_changed_messages() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO message_count_changes (change)
    SELECT TG_ARGV[0]::bigint * count(*) FROM changed_rows HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_changed_deliveries('1');
CREATE TRIGGER deliveries_count_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_updated_deliveries();
CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_changed_deliveries('-1');
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_changed_messages('1');
CREATE TRIGGER messages_count_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_changed_messages('-1');

-- TRUNCATE runs no row or statement trigger of the kinds above: it empties the
-- counts too (the table of changes named by the trigger). After any fold in progress
-- (the fold's lock), so that no sum it writes outlives the rows it summed.
CREATE FUNCTION clear_counts() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('hookgate:counts', 0));
    EXECUTE format('DELETE FROM %I', TG_ARGV[0]);
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_count_truncate AFTER TRUNCATE ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION clear_counts('delivery_count_changes');
CREATE TRIGGER messages_count_truncate AFTER TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION clear_counts('message_count_changes');

-- The rows already there. The migration holds both tables against writes until it
-- commits (database.migrate), so no commit falls between this count and the triggers.
INSERT INTO delivery_count_changes (destination, state, change)
SELECT destination, state, count(*) FROM deliveries GROUP BY destination, state;
INSERT INTO message_count_changes (change) SELECT count(*) FROM messages HAVING count(*) > 0;
