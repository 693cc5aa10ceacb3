-- Who holds a push's lease (a node id drawn at each process start, so a
-- node's outcome is recorded only while it still holds the row) and the
-- Call-ID its NOTIFY carries: drawn at the first lease of an attempt and
-- kept when another node takes the lease over from a node that died, so the
-- phone receives the same request again (a retransmission), not a second
-- NOTIFY. Both are emptied when a newer revision is queued.
ALTER TABLE push ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE push ADD COLUMN call_id TEXT NOT NULL DEFAULT '';
