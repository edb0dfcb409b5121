-- The message listing's filters (admin API, dashboard) find their rows through an
-- index at any size; rowid order within each keeps pages newest first without a sort.
CREATE INDEX messages_source ON messages(source);
CREATE INDEX messages_event_type ON messages(event_type) WHERE event_type IS NOT NULL;
CREATE INDEX messages_event_id ON messages(event_id) WHERE event_id IS NOT NULL;
