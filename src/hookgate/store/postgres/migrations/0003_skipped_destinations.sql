-- The destinations a message skipped and why: JSON [{"destination", "reason"}], as
-- the SQLite store keeps it (so hookgate migrate copies it as it is), or NULL when
-- none was skipped (most messages: nothing to write or read).
ALTER TABLE messages ADD COLUMN skipped BYTEA;
