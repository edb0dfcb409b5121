-- Messages (the body stored once), one delivery per destination, and every attempt.
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    received_at REAL NOT NULL,
    event_type TEXT,
    event_id TEXT,
    dedup_key TEXT,            -- event_id while inside the dedup window, then NULL
    headers BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE UNIQUE INDEX messages_dedup ON messages(source, dedup_key)
    WHERE dedup_key IS NOT NULL;
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(destination, next_attempt_at, id)
    WHERE state = 'pending';
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
