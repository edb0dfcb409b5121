-- A claim (claimed_by, lease_until) changes no indexed column once this index is gone,
-- so PostgreSQL can write it as a heap-only tuple: no new entry in each of the
-- deliveries' indexes for every claim. A process knows what it claimed, so it renews
-- and releases its leases by id (the primary key), not by looking up its name.
DROP INDEX deliveries_claimed;
-- Room on each new page for the claim's new row version beside the old one (HOT
-- needs it on the same page).
ALTER TABLE deliveries SET (fillfactor = 80);
