-- The push outbox: one row per handset, written in the transaction of every
-- change that bumps its revision (coalesced: only the newest revision needs
-- a NOTIFY). Workers lease due rows (claimed_until) so that each push is
-- sent by one node; the row keeps the push state for Handset Select.
CREATE TABLE push (
    handset_id    INTEGER PRIMARY KEY REFERENCES handset(id) ON DELETE CASCADE,
    revision      INTEGER NOT NULL,
    reboot        INTEGER NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    last_push_at  INTEGER,
    last_error    TEXT    NOT NULL DEFAULT '',
    updated_at    INTEGER NOT NULL
);
CREATE INDEX push_due ON push (state, next_attempt);
