-- Messages (the body stored once), one delivery per destination, and every attempt.
-- Times are unix seconds (double precision), as in the SQLite store.
CREATE TABLE messages (
    id BIGINT PRIMARY KEY,           -- time-ordered: 41 bits of milliseconds, 22 random
    source TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    event_type TEXT,
    event_id TEXT,
    dedup_key TEXT,                  -- event_id while inside the dedup window, then NULL
    headers BYTEA NOT NULL,
    body BYTEA NOT NULL
);
-- Dedup across every process: INSERT .. ON CONFLICT DO NOTHING on this index.
CREATE UNIQUE INDEX messages_dedup ON messages (source, dedup_key)
    WHERE dedup_key IS NOT NULL;

CREATE TABLE deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    dead_reason TEXT,
    -- The lease: which process claimed the delivery, and until when (the database's
    -- clock) no other process may. Renewed while the process lives; its outcome or
    -- a release clears it.
    claimed_by TEXT,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX deliveries_fifo ON deliveries (destination, id) WHERE state = 'pending';
CREATE INDEX deliveries_message ON deliveries (message_id);
CREATE INDEX deliveries_dead ON deliveries (destination, updated_at) WHERE state = 'dead';
CREATE INDEX deliveries_claimed ON deliveries (claimed_by) WHERE claimed_by IS NOT NULL;

CREATE TABLE attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    started_at DOUBLE PRECISION NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    status INTEGER,
    error TEXT,
    response_snippet BYTEA,
    attempted_by TEXT                -- the process that made the attempt
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

-- Pause and circuit, shared by every process.
CREATE TABLE destinations (
    name TEXT PRIMARY KEY,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    circuit_open_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at DOUBLE PRECISION NOT NULL
);

-- A destination's rate limit across processes: ``rate`` slots, each free again once
-- ``free_at`` (the database's clock) has passed.
CREATE TABLE rate_slots (
    destination TEXT NOT NULL,
    slot INTEGER NOT NULL,
    free_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (destination, slot)
);

-- Rows: ('identity', <random hex>) and ('heartbeat', <unix time of the last one>).
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('identity', replace(gen_random_uuid()::text, '-', '')),
    ('heartbeat', '0');
