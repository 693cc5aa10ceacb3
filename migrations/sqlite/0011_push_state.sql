-- Push states are the four of model::push::PushState, and nothing else.
-- SQLite adds a CHECK only by rebuilding the table (nothing refers to it).
CREATE TABLE push_checked (
    handset_id    INTEGER PRIMARY KEY REFERENCES handset(id) ON DELETE CASCADE,
    revision      INTEGER NOT NULL,
    reboot        INTEGER NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'no-target')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    last_push_at  INTEGER,
    last_error    TEXT    NOT NULL DEFAULT '',
    updated_at    INTEGER NOT NULL
);
INSERT INTO push_checked (handset_id, revision, reboot, state, attempts, next_attempt, claimed_until, last_push_at, last_error, updated_at)
    SELECT handset_id, revision, reboot, state, attempts, next_attempt, claimed_until, last_push_at, last_error, updated_at FROM push;
DROP TABLE push;
ALTER TABLE push_checked RENAME TO push;
CREATE INDEX push_due ON push (state, next_attempt);
