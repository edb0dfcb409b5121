-- The database's identity: the lock file records it, ingress loop detection uses it.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('identity', lower(hex(randomblob(16)))), ('heartbeat', '0');
ALTER TABLE deliveries ADD COLUMN dead_reason TEXT;
-- Counts kept by triggers, so that stats cost the same at ten rows or ten million.
CREATE TABLE message_count (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL);
INSERT INTO message_count SELECT 1, count(*) FROM messages;
CREATE TABLE delivery_counts (
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (destination, state)
) WITHOUT ROWID;
INSERT INTO delivery_counts SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2;
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
    UPDATE message_count SET count = count + 1;
END;
CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
    UPDATE message_count SET count = count - 1;
END;
CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries BEGIN
    INSERT INTO delivery_counts VALUES (new.destination, new.state, 1)
    ON CONFLICT (destination, state) DO UPDATE SET count = count + 1;
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
