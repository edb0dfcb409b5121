-- Pause survives a restart.
CREATE TABLE destinations (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
-- Ordered destinations take their head in delivery order, whatever its due time.
CREATE INDEX deliveries_fifo ON deliveries(destination, id) WHERE state = 'pending';
