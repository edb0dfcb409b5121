-- The destinations a message skipped and why: JSON [{"destination", "reason"}], or
-- NULL when none was skipped (most messages: nothing to write or read).
ALTER TABLE messages ADD COLUMN skipped BLOB;
