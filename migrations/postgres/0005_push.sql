-- The push outbox: one row per handset, written in the transaction of every
-- change that bumps its revision (coalesced: only the newest revision needs
-- a NOTIFY). Workers lease due rows (claimed_until) so that each push is
-- sent by one node; the row keeps the push state for Handset Select.
CREATE TABLE push (
    handset_id    BIGINT  PRIMARY KEY REFERENCES handset(id) ON DELETE CASCADE,
    revision      BIGINT  NOT NULL,
    reboot        BIGINT  NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL,
    attempts      BIGINT  NOT NULL DEFAULT 0,
    next_attempt  BIGINT  NOT NULL,
    claimed_until BIGINT  NOT NULL DEFAULT 0,
    last_push_at  BIGINT,
    last_error    TEXT    NOT NULL DEFAULT '',
    updated_at    BIGINT  NOT NULL
);
CREATE INDEX push_due ON push (state, next_attempt);
