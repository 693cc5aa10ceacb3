-- Call control (issue 14): each request to make a handset dial, transfer
-- its call, or let a supervisor listen, whisper or join is a row, queued
-- with the 202 and carried out after it; its outcome is written back.
CREATE TABLE call_action (
    id          TEXT    PRIMARY KEY,
    domain_id   INTEGER NOT NULL REFERENCES domain(id) ON DELETE CASCADE,
    handset_id  INTEGER NOT NULL REFERENCES handset(id) ON DELETE CASCADE,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'sent', 'done', 'failed')),
    error       TEXT    NOT NULL DEFAULT '',
    actor       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX call_action_domain ON call_action (domain_id, created_at);
-- The Asterisk dialplan context AMI call actions dial into.
ALTER TABLE domain ADD COLUMN ami_context TEXT NOT NULL DEFAULT 'from-internal';
