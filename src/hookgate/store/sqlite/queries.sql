-- Every query the SQLite store runs, by name; sql.py reads this file once at import.
-- A name is a line "-- name --"; comment lines right after it describe the query.
-- "{keys}", "{ids}" and "{where}" are filled with "?" marks or fixed clauses, never
-- with values: values are always bound.

-- select_user_version --
PRAGMA user_version

-- select_identity --
SELECT value FROM meta WHERE key = 'identity'

-- select_max_message_id --
SELECT coalesce(max(id), 0) FROM messages

-- heartbeat --
-- A write that shows the database takes writes, when no recent commit did.
UPDATE meta SET value = ? WHERE key = 'heartbeat'

-- expire_dedup_key --
-- An event id seen before the dedup window began no longer makes a duplicate: run for
-- the holders select_dedup_owners found too old, not for every message.
UPDATE messages SET dedup_key = NULL WHERE source = ? AND dedup_key = ? AND received_at < ?

-- insert_message --
-- Only messages the dedup lookup found new: a conflict fails the commit (nothing is
-- answered for a row that was not written). The writer repeats the VALUES row to
-- insert up to 64 messages in one statement (writer.py: insert_rows).
INSERT INTO messages (id, source, received_at, event_type, event_id, dedup_key, headers, body,
    skipped)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)

-- add_message_count --
-- Inserts are counted here, once per commit, not by a trigger per row (about 1.3 µs a
-- webhook: docs/benchmarks.md, "The group commit's cost per webhook"). Deletes are
-- still counted by the trigger messages_count_delete.
UPDATE message_count SET count = count + ?

-- add_delivery_count --
-- New deliveries, once per commit and destination (the writer) or per replay: as
-- add_message_count. Changes of state and deletes are counted by triggers.
INSERT INTO delivery_counts VALUES (?, ?, ?)
ON CONFLICT (destination, state) DO UPDATE SET count = count + excluded.count

-- select_dedup_owners --
-- Which message holds each event id, before the batch's inserts: an equality and an
-- IN list are what SQLite's planner turns into index lookups (a row-value IN over
-- VALUES scans the whole table on SQLite 3.40). received_at is read from the table
-- only for the keys found (duplicates), never for a new event id.
SELECT dedup_key, id, received_at FROM messages WHERE source = ? AND dedup_key IN ({keys})

-- select_max_delivery_id --
-- The writer gives a commit's new deliveries the ids after this one (insert_deliveries).
SELECT coalesce(max(id), 0) FROM deliveries

-- insert_deliveries --
-- A commit's new deliveries in one statement (cheaper than binding a row at a time):
-- a JSON array of rows [id, message_id, destination, received_at]. The ids are the
-- writer's (select_max_delivery_id), so that it knows the rows without reading them back.
INSERT INTO deliveries (id, message_id, destination, state, next_attempt_at, updated_at)
SELECT json_extract(o.value, '$[0]'), json_extract(o.value, '$[1]'),
    json_extract(o.value, '$[2]'), 'pending', json_extract(o.value, '$[3]'),
    json_extract(o.value, '$[3]')
FROM json_each(?) AS o

-- settle_deliveries --
-- Every outcome of a commit in one statement (binding each row's values one by one
-- from Python cost more than the update itself): a JSON array of rows
-- [id, state, attempts, next_attempt_at, last_status, last_error, dead_reason], then
-- updated_at. A delivery appears once: its lease holds until its outcome commits.
-- (json_extract, not ->>, which needs SQLite 3.38; UPDATE .. FROM needs 3.33.)
UPDATE deliveries SET state = json_extract(o.value, '$[1]'),
    attempts = json_extract(o.value, '$[2]'), next_attempt_at = json_extract(o.value, '$[3]'),
    last_status = json_extract(o.value, '$[4]'), last_error = json_extract(o.value, '$[5]'),
    dead_reason = json_extract(o.value, '$[6]'), updated_at = ?2
FROM json_each(?1) AS o
WHERE deliveries.id = json_extract(o.value, '$[0]')

-- insert_attempt --
-- Repeated as insert_message is (writer.py: insert_rows).
INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, response_snippet)
VALUES (?, ?, ?, ?, ?, ?)

-- select_due --
-- The excluded (in flight) rows are skipped in the index, their bodies never read.
SELECT d.id, d.message_id, d.attempts, d.next_attempt_at,
    m.received_at, m.source, m.event_type, m.headers, m.body
FROM deliveries d JOIN messages m ON m.id = d.message_id
WHERE d.destination = ? AND d.state = 'pending' AND d.next_attempt_at <= ?
  AND d.id NOT IN (SELECT value FROM json_each(?))
ORDER BY d.next_attempt_at, d.id LIMIT ?

-- select_head --
SELECT d.id, d.message_id, d.attempts, d.next_attempt_at,
    m.received_at, m.source, m.event_type, m.headers, m.body
FROM deliveries d INDEXED BY deliveries_fifo JOIN messages m ON m.id = d.message_id
WHERE d.destination = ? AND d.state = 'pending'
ORDER BY d.id LIMIT ?

-- select_next_due --
SELECT next_attempt_at FROM deliveries
WHERE destination = ? AND state = 'pending' AND next_attempt_at > ?
ORDER BY next_attempt_at LIMIT 1

-- select_paused --
SELECT name FROM destinations WHERE paused

-- set_paused --
INSERT INTO destinations (name, paused, updated_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at

-- select_oldest_pending --
-- The head of a destination's line: the delivery pending longest, and its message's age.
SELECT m.received_at
FROM deliveries d INDEXED BY deliveries_fifo JOIN messages m ON m.id = d.message_id
WHERE d.destination = ? AND d.state = 'pending'
ORDER BY d.id LIMIT 1

-- select_delivery_counts --
SELECT destination, state, count FROM delivery_counts WHERE count > 0

-- select_message_count --
SELECT count FROM message_count

-- prune --
-- Ids are time-ordered, so "received before" is an id range on the primary key.
DELETE FROM messages WHERE id IN (
    SELECT m.id FROM messages m WHERE m.id < ? AND NOT EXISTS (
        SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state = 'pending')
    ORDER BY m.id LIMIT ?)

-- list_messages --
-- Newest first; {where} is the filter clauses that apply (store/admin.py), joined by AND.
SELECT m.id, m.source, m.event_type, m.event_id, m.received_at, length(m.body)
FROM messages m WHERE {where} ORDER BY m.id DESC LIMIT ?

-- get_message --
SELECT m.id, m.source, m.event_type, m.event_id, m.received_at, length(m.body),
    m.headers, m.body, m.skipped
FROM messages m WHERE m.id = ?

-- count_message_deliveries --
SELECT message_id, state, count(*) FROM deliveries WHERE message_id IN ({ids}) GROUP BY 1, 2

-- list_deliveries --
-- Newest first; {where} is the filter clauses that apply (store/admin.py), joined by AND.
SELECT d.id, d.message_id, d.destination, d.state, d.attempts, d.next_attempt_at,
    d.last_status, d.last_error, d.updated_at, d.dead_reason
FROM deliveries d WHERE {where} ORDER BY d.id DESC LIMIT ?

-- get_delivery --
SELECT d.id, d.message_id, d.destination, d.state, d.attempts, d.next_attempt_at,
    d.last_status, d.last_error, d.updated_at, d.dead_reason
FROM deliveries d WHERE d.id = ?

-- list_attempts --
SELECT started_at, duration_ms, status, error, response_snippet FROM attempts
WHERE delivery_id = ? ORDER BY id

-- retry_delivery --
UPDATE deliveries
SET state = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?, dead_reason = NULL
WHERE id = ? AND state != 'delivered'

-- retry_dead --
UPDATE deliveries
SET state = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?, dead_reason = NULL
WHERE destination = ? AND state = 'dead' AND updated_at >= ?

-- replay_delivery --
-- Nothing is inserted when retention pruned the message meanwhile.
INSERT INTO deliveries (message_id, destination, state, next_attempt_at, updated_at)
SELECT id, ?, 'pending', ?, ? FROM messages WHERE id = ?

-- export_messages --
-- hookgate migrate: the messages after an id, in id order (a page). {skipped} is the
-- column, or NULL in a database that an older hookgate left without it.
SELECT id, source, received_at, event_type, event_id, dedup_key, headers, body, {skipped}
FROM messages WHERE id > ? ORDER BY id LIMIT ?

-- has_skipped_column --
SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'skipped'

-- export_deliveries --
SELECT id, message_id, destination, state, attempts, next_attempt_at, last_status,
    last_error, updated_at, dead_reason
FROM deliveries WHERE id > ? ORDER BY id LIMIT ?

-- export_attempts --
SELECT id, delivery_id, started_at, duration_ms, status, error, response_snippet
FROM attempts WHERE id > ? ORDER BY id LIMIT ?

-- export_destinations --
SELECT name, paused, updated_at FROM destinations
