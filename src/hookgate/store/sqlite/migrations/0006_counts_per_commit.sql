-- Inserts are counted by the writer, once per commit and per destination
-- (store/sqlite/writer.py, add_message_count and add_delivery_count in queries.sql),
-- instead of by a trigger per row: about 2 µs of the SQLite thread's CPU per webhook
-- with one destination (docs/benchmarks.md, "The group commit's cost per webhook").
-- The counts themselves are right already; changes of state and deletes keep their
-- triggers (outcomes, retention, the admin API).
DROP TRIGGER messages_count_insert;
DROP TRIGGER deliveries_count_insert;
