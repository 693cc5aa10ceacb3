-- Who holds a push's lease (a node id drawn at each process start, so a
-- node's outcome is recorded only while it still holds the row) and the
-- Call-ID its NOTIFY carries: drawn at the first lease of an attempt and
-- kept when another node takes the lease over from a node that died, so the
-- phone receives the same request again (a retransmission), not a second
-- NOTIFY. Both are emptied when a newer revision is queued.
ALTER TABLE push ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE push ADD COLUMN call_id TEXT NOT NULL DEFAULT '';

-- Other nodes hear of a change at once: a notice on commit of every
-- statement that records a config change or queues a push (PostgreSQL
-- delivers notices only when the transaction commits, and folds identical
-- ones of one transaction into one). Nodes still poll the feed as a
-- fallback; SQLite has a single node and needs none of this.
CREATE FUNCTION autoprov_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('autoprov_change', '');
    RETURN NULL;
END $$;
CREATE TRIGGER config_change_notice AFTER INSERT ON config_change
    FOR EACH STATEMENT EXECUTE FUNCTION autoprov_notify_change();

CREATE FUNCTION autoprov_notify_push() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('autoprov_push', '');
    RETURN NULL;
END $$;
-- Only queueing writes the revision (an insert, or the upsert of a newer
-- one); leases and outcomes do not, so they wake nobody.
CREATE TRIGGER push_queued_notice AFTER INSERT OR UPDATE OF revision ON push
    FOR EACH STATEMENT EXECUTE FUNCTION autoprov_notify_push();
