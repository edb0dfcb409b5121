-- The schema that migrations/ produce, in one place for reading. The store builds
-- every database from the migrations only; tests/integration/test_store_schema.py
-- checks that the two agree. A new migration changes this file too.

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    received_at REAL NOT NULL,
    event_type TEXT,
    event_id TEXT,
    dedup_key TEXT,            -- event_id while inside the dedup window, then NULL
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    skipped BLOB               -- JSON [{"destination", "reason"}], NULL when none
);
CREATE UNIQUE INDEX messages_dedup ON messages(source, dedup_key)
    WHERE dedup_key IS NOT NULL;
CREATE INDEX messages_source ON messages(source);
CREATE INDEX messages_event_type ON messages(event_type) WHERE event_type IS NOT NULL;
CREATE INDEX messages_event_id ON messages(event_id) WHERE event_id IS NOT NULL;

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    updated_at REAL NOT NULL,
    dead_reason TEXT
);
CREATE INDEX deliveries_due ON deliveries(destination, next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX deliveries_fifo ON deliveries(destination, id) WHERE state = 'pending';
CREATE INDEX deliveries_message ON deliveries(message_id);
CREATE INDEX deliveries_dead ON deliveries(destination, updated_at) WHERE state = 'dead';

CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    status INTEGER,
    error TEXT,
    response_snippet BLOB
);
CREATE INDEX attempts_delivery ON attempts(delivery_id);

CREATE TABLE destinations (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);

-- Rows: ('identity', <random hex>) and ('heartbeat', <unix time of the last one>).
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

-- Counts, so that stats cost the same at ten rows or ten million. The writer adds the
-- rows it inserts, once per commit (add_message_count, add_delivery_count in
-- queries.sql); the triggers below count changes of state and deletes.
CREATE TABLE message_count (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL);
CREATE TABLE delivery_counts (
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (destination, state)
) WITHOUT ROWID;

CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
    UPDATE message_count SET count = count - 1;
END;
CREATE TRIGGER deliveries_count_update AFTER UPDATE OF state ON deliveries
WHEN old.state != new.state BEGIN
    UPDATE delivery_counts SET count = count - 1
    WHERE destination = old.destination AND state = old.state;
    INSERT INTO delivery_counts VALUES (new.destination, new.state, 1)
    ON CONFLICT (destination, state) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries BEGIN
    UPDATE delivery_counts SET count = count - 1
    WHERE destination = old.destination AND state = old.state;
END;
