-- Every query the PostgreSQL store runs, by name; sql.py reads this file once at import.
-- A name is a line "-- name --"; comment lines right after it describe the query.
-- "{where}" is filled with fixed clauses (store/admin.py), never with values: values are
-- always bound (%s). Arrays of rows go in as one array per column and come out of
-- unnest(): one statement, one round trip, however many rows.
-- "Now" for leases, rate slots and circuits is the database's clock, the one clock
-- that every process on every machine shares.

-- create_schema_table --
CREATE TABLE IF NOT EXISTS hookgate_schema (version INTEGER NOT NULL)

-- lock_migrations --
-- Many processes may start at once: one migrates, the others wait and find it done.
SELECT pg_advisory_xact_lock(hashtextextended('hookgate:migrations', 0))

-- limit_lock_waits --
-- For the migrations' transaction only (set_config's "local"): see database.migrate.
SELECT set_config('lock_timeout', %s, true)

-- lock_tables_for_migration --
-- Held to the migrations' commit: writes wait, reads go on (database.migrate).
LOCK TABLE messages, deliveries IN SHARE ROW EXCLUSIVE MODE

-- select_schema_version --
SELECT coalesce(max(version), 0) FROM hookgate_schema

-- insert_schema_version --
INSERT INTO hookgate_schema (version) VALUES (%s)

-- select_identity --
SELECT value FROM meta WHERE key = 'identity'

-- select_max_message_id --
SELECT coalesce(max(id), 0) FROM messages

-- heartbeat --
UPDATE meta SET value = %s WHERE key = 'heartbeat'

-- expire_dedup_keys --
-- An event id seen before the dedup window began no longer makes a duplicate.
-- "= ANY" names the keys to the planner too: a plan prepared while the table was
-- small (psycopg prepares a statement run often, and keeps its generic plan) still
-- reads the index, not the whole table, once it has grown.
UPDATE messages m SET dedup_key = NULL
FROM unnest(%(sources)b::text[], %(keys)b::text[], %(cutoffs)b::float8[])
    AS k (source, key, cutoff)
WHERE m.source = k.source AND m.dedup_key = k.key AND m.received_at < k.cutoff
  AND m.dedup_key = ANY (%(keys)b::text[])

-- insert_messages --
-- The messages and, for each one that went in, its deliveries (in the order given),
-- in one statement. A conflict on the dedup index (or, rarely, on an id another
-- process drew) inserts nothing; the ids that went in come back. Hot arrays go in
-- binary (%b): a body is sent as its bytes, not as escaped hex that both sides parse.
WITH inserted AS (
    INSERT INTO messages (id, source, received_at, event_type, event_id, dedup_key, headers,
        body, skipped)
    SELECT * FROM unnest(%b::bigint[], %b::text[], %b::float8[], %b::text[], %b::text[],
        %b::text[], %b::bytea[], %b::bytea[], %b::bytea[])
    ON CONFLICT DO NOTHING
    RETURNING id, received_at
), queued AS (
    INSERT INTO deliveries (message_id, destination, state, next_attempt_at, updated_at)
    SELECT i.id, x.destination, 'pending', i.received_at, i.received_at
    FROM unnest(%b::bigint[], %b::text[]) WITH ORDINALITY AS x (message_id, destination, n)
    JOIN inserted i ON i.id = x.message_id
    ORDER BY x.n
)
SELECT id FROM inserted

-- select_dedup_owners --
-- Which message holds each event id: one index lookup per key.
SELECT m.source, m.dedup_key, m.id
FROM unnest(%(sources)b::text[], %(keys)b::text[]) AS k (source, key)
JOIN messages m ON m.source = k.source AND m.dedup_key = k.key
WHERE m.dedup_key = ANY (%(keys)b::text[])

-- notify_deliveries --
-- Sent when the transaction commits: wakes the idle workers of every process.
SELECT pg_notify('hookgate', %s)

-- record_attempts --
-- Settle each delivery as its attempt left it (the lease ends with the outcome) and
-- keep the attempt, in one statement. An attempt that names no delivery fails it (the
-- foreign key), and with it the batch. "= ANY" keeps the update on the primary key in
-- a plan prepared while the table was small (see expire_dedup_keys): that plan read
-- the whole table for every batch, most of the database's CPU per webhook.
WITH x AS (
    SELECT * FROM unnest(%(ids)b::bigint[], %(states)b::text[], %(attempts)b::int[],
        %(next_attempt_at)b::float8[], %(status)b::int[], %(errors)b::text[],
        %(dead_reasons)b::text[], %(started_at)b::float8[], %(duration_ms)b::float8[],
        %(snippets)b::bytea[])
        AS x (id, state, attempts, next_attempt_at, status, error, dead_reason, started_at,
            duration_ms, snippet)
), settled AS (
    UPDATE deliveries d SET state = x.state, attempts = x.attempts,
        next_attempt_at = x.next_attempt_at, last_status = x.status, last_error = x.error,
        dead_reason = x.dead_reason, updated_at = %(now)b, claimed_by = NULL, lease_until = 0
    FROM x WHERE d.id = x.id AND d.id = ANY (%(ids)b::bigint[])
)
INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, response_snippet,
    attempted_by)
SELECT x.id, x.started_at, x.duration_ms, x.status, x.error, x.snippet, %(owner)b FROM x

-- select_due --
SELECT d.id, d.message_id, d.attempts, d.next_attempt_at,
    m.received_at, m.source, m.event_type, m.headers, m.body
FROM deliveries d JOIN messages m ON m.id = d.message_id
WHERE d.destination = %s AND d.state = 'pending' AND d.next_attempt_at <= %s
  AND d.id <> ALL (%s::bigint[])
ORDER BY d.next_attempt_at, d.id LIMIT %s

-- claim_due --
-- Due, unleased deliveries of a destination that is neither paused nor open, oldest
-- first; rows another process is claiming right now are skipped, not waited for.
WITH due AS (
    SELECT d.id FROM deliveries d
    WHERE d.destination = %(destination)s AND d.state = 'pending'
      AND d.next_attempt_at <= %(now)s AND d.lease_until <= extract(epoch FROM now())
      AND NOT EXISTS (
          SELECT 1 FROM destinations
          WHERE name = %(destination)s
            AND (paused OR circuit_open_until > extract(epoch FROM now())))
    ORDER BY d.next_attempt_at, d.id LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d
SET claimed_by = %(owner)s, lease_until = extract(epoch FROM now()) + %(lease)s
FROM due, messages m
WHERE d.id = due.id AND m.id = d.message_id
RETURNING d.id, d.message_id, d.attempts, d.next_attempt_at,
    m.received_at, m.source, m.event_type, m.headers, m.body

-- claim_listed --
-- The listed deliveries (an ordered destination's head), those still pending and
-- unleased.
UPDATE deliveries d
SET claimed_by = %(owner)s, lease_until = extract(epoch FROM now()) + %(lease)s
FROM messages m
WHERE d.id = ANY (%(ids)s::bigint[]) AND d.state = 'pending'
  AND d.lease_until <= extract(epoch FROM now()) AND m.id = d.message_id
  AND NOT EXISTS (
      SELECT 1 FROM destinations
      WHERE name = d.destination
        AND (paused OR circuit_open_until > extract(epoch FROM now())))
RETURNING d.id, d.message_id, d.attempts, d.next_attempt_at,
    m.received_at, m.source, m.event_type, m.headers, m.body

-- release_claims --
UPDATE deliveries SET claimed_by = NULL, lease_until = 0
WHERE id = ANY (%s::bigint[]) AND claimed_by = %s

-- renew_leases --
-- While a process lives, its leases do not run out, however long an attempt takes: it
-- names what it holds (by the primary key; no index on claimed_by, see migration 4).
UPDATE deliveries SET lease_until = extract(epoch FROM now()) + %s
WHERE id = ANY (%b::bigint[]) AND claimed_by = %s AND state = 'pending'

-- select_head --
SELECT d.id, d.message_id, d.attempts, d.next_attempt_at,
    m.received_at, m.source, m.event_type, m.headers, m.body
FROM deliveries d JOIN messages m ON m.id = d.message_id
WHERE d.destination = %s AND d.state = 'pending'
ORDER BY d.id LIMIT %s

-- select_next_due --
SELECT next_attempt_at FROM deliveries
WHERE destination = %s AND state = 'pending' AND next_attempt_at > %s
ORDER BY next_attempt_at LIMIT 1

-- try_order_lock --
-- One process at a time delivers an ordered destination: a session lock, released
-- when the process (its connection) ends.
SELECT pg_try_advisory_lock(hashtextextended('hookgate:order:' || %s, 0))

-- release_order_lock --
SELECT pg_advisory_unlock(hashtextextended('hookgate:order:' || %s, 0))

-- add_rate_slots --
INSERT INTO rate_slots (destination, slot, free_at)
SELECT %s, generate_series(0, %s - 1), 0
ON CONFLICT DO NOTHING

-- take_rate_slot --
-- A free slot, held until ``hold`` seconds from now: the most a request can take
-- and its window after, should the process die before it frees the slot.
WITH free AS (
    SELECT slot FROM rate_slots
    WHERE destination = %(destination)s AND slot < %(count)s
      AND free_at <= extract(epoch FROM clock_timestamp())
    ORDER BY free_at LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE rate_slots r SET free_at = extract(epoch FROM clock_timestamp()) + %(hold)s
FROM free WHERE r.destination = %(destination)s AND r.slot = free.slot
RETURNING r.slot

-- next_rate_slot_in --
-- Seconds until the first slot frees (a slot held by a running request shows its hold).
SELECT min(free_at) - extract(epoch FROM clock_timestamp()) FROM rate_slots
WHERE destination = %s AND slot < %s

-- free_rate_slot --
-- The request ended now: its slot frees one window later.
UPDATE rate_slots SET free_at = extract(epoch FROM clock_timestamp()) + %s
WHERE destination = %s AND slot = %s

-- set_circuit --
INSERT INTO destinations (name, circuit_open_until, updated_at) VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE
SET circuit_open_until = excluded.circuit_open_until, updated_at = excluded.updated_at

-- select_paused --
SELECT name FROM destinations WHERE paused

-- set_paused --
-- The other processes hear of it (NOTIFY) and show the destination paused too.
WITH changed AS (
    INSERT INTO destinations (name, paused, updated_at) VALUES (%(name)s, %(paused)s, %(at)s)
    ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at
    RETURNING name
)
SELECT pg_notify('hookgate', %(notice)s) FROM changed

-- select_oldest_pending --
SELECT m.received_at
FROM deliveries d JOIN messages m ON m.id = d.message_id
WHERE d.destination = %s AND d.state = 'pending'
ORDER BY d.id LIMIT 1

-- select_delivery_counts --
-- Sums of the rows of changes (migration 0005), not a count of the deliveries: a read
-- as small at a hundred million rows as at ten.
SELECT destination, state, sum(change)::bigint FROM delivery_count_changes
GROUP BY 1, 2 HAVING sum(change) <> 0

-- select_message_count --
SELECT coalesce(sum(change), 0)::bigint FROM message_count_changes

-- compact_counts --
-- Fold the rows of changes into one per group (and one for the messages), in one
-- statement: its snapshot is the sum it replaces, and a commit that lands meanwhile
-- keeps its own rows for the next fold. One process at a time (the lock, held to the
-- statement's end): two folds deleting the same rows could wait on each other.
WITH locked AS (
    SELECT pg_try_advisory_xact_lock(hashtextextended('hookgate:counts', 0)) AS held
), deliveries_folded AS (
    DELETE FROM delivery_count_changes WHERE (SELECT held FROM locked)
    RETURNING destination, state, change
), messages_folded AS (
    DELETE FROM message_count_changes WHERE (SELECT held FROM locked)
    RETURNING change
), messages_kept AS (
    INSERT INTO message_count_changes (change)
    SELECT sum(change) FROM messages_folded HAVING sum(change) <> 0
)
INSERT INTO delivery_count_changes (destination, state, change)
SELECT destination, state, sum(change) FROM deliveries_folded
GROUP BY 1, 2 HAVING sum(change) <> 0

-- prune --
-- Ids are time-ordered, so "received before" is an id range on the primary key.
DELETE FROM messages WHERE id IN (
    SELECT m.id FROM messages m WHERE m.id < %s AND NOT EXISTS (
        SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state = 'pending')
    ORDER BY m.id LIMIT %s)

-- list_messages --
-- Newest first; {where} is the filter clauses that apply (store/admin.py), joined by AND.
SELECT m.id, m.source, m.event_type, m.event_id, m.received_at, length(m.body)
FROM messages m WHERE {where} ORDER BY m.id DESC LIMIT %s

-- get_message --
SELECT m.id, m.source, m.event_type, m.event_id, m.received_at, length(m.body),
    m.headers, m.body, m.skipped
FROM messages m WHERE m.id = %s

-- count_message_deliveries --
SELECT message_id, state, count(*) FROM deliveries
WHERE message_id = ANY (%s::bigint[]) GROUP BY 1, 2

-- list_deliveries --
-- Newest first; {where} is the filter clauses that apply (store/admin.py), joined by AND.
SELECT d.id, d.message_id, d.destination, d.state, d.attempts, d.next_attempt_at,
    d.last_status, d.last_error, d.updated_at, d.dead_reason
FROM deliveries d WHERE {where} ORDER BY d.id DESC LIMIT %s

-- get_delivery --
SELECT d.id, d.message_id, d.destination, d.state, d.attempts, d.next_attempt_at,
    d.last_status, d.last_error, d.updated_at, d.dead_reason
FROM deliveries d WHERE d.id = %s

-- list_attempts --
SELECT started_at, duration_ms, status, error, response_snippet FROM attempts
WHERE delivery_id = %s ORDER BY id

-- retry_delivery --
UPDATE deliveries
SET state = 'pending', attempts = 0, next_attempt_at = %s, updated_at = %s, dead_reason = NULL
WHERE id = %s AND state <> 'delivered'

-- retry_dead --
UPDATE deliveries
SET state = 'pending', attempts = 0, next_attempt_at = %s, updated_at = %s, dead_reason = NULL
WHERE destination = %s AND state = 'dead' AND updated_at >= %s

-- replay_delivery --
-- Nothing is inserted when retention pruned the message meanwhile.
INSERT INTO deliveries (message_id, destination, state, next_attempt_at, updated_at)
SELECT id, %s, 'pending', %s, %s FROM messages WHERE id = %s
RETURNING id

-- select_migrated_from --
-- hookgate migrate: the SQLite database this one was copied from, if any.
SELECT value FROM meta WHERE key = 'migrated_from'

-- set_migrated_from --
INSERT INTO meta (key, value) VALUES ('migrated_from', %s) ON CONFLICT (key) DO NOTHING

-- import_messages --
-- Ids kept, so that a second run skips what the first copied.
INSERT INTO messages (id, source, received_at, event_type, event_id, dedup_key, headers, body,
    skipped)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::text[], %s::text[],
    %s::text[], %s::bytea[], %s::bytea[], %s::bytea[])
ON CONFLICT DO NOTHING
RETURNING id

-- import_deliveries --
INSERT INTO deliveries (id, message_id, destination, state, attempts, next_attempt_at,
    last_status, last_error, updated_at, dead_reason)
OVERRIDING SYSTEM VALUE
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::int[],
    %s::float8[], %s::int[], %s::text[], %s::float8[], %s::text[])
ON CONFLICT (id) DO NOTHING
RETURNING state

-- import_attempts --
INSERT INTO attempts (id, delivery_id, started_at, duration_ms, status, error,
    response_snippet)
OVERRIDING SYSTEM VALUE
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::float8[], %s::int[],
    %s::text[], %s::bytea[])
ON CONFLICT (id) DO NOTHING
RETURNING id

-- import_destination --
INSERT INTO destinations (name, paused, updated_at) VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at

-- sync_identities --
-- New deliveries and attempts get ids above the copied ones.
SELECT setval(pg_get_serial_sequence('deliveries', 'id'),
        (SELECT coalesce(max(id), 0) + 1 FROM deliveries), false),
    setval(pg_get_serial_sequence('attempts', 'id'),
        (SELECT coalesce(max(id), 0) + 1 FROM attempts), false)
