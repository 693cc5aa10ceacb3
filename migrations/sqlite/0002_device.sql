-- Every MAC that asked for a per-phone file, known or not. handset_id is the
-- handset the last fetch was served as (NULL: unknown, for installers to
-- claim). Unknown rows are capped by the server (oldest evicted).
CREATE TABLE device (
    mac         TEXT    PRIMARY KEY,
    handset_id  INTEGER REFERENCES handset(id) ON DELETE SET NULL,
    ip          TEXT    NOT NULL,
    user_agent  TEXT    NOT NULL,
    vendor      TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    firmware    TEXT    NOT NULL,
    last_file   TEXT    NOT NULL,
    protocol    TEXT    NOT NULL,
    revision    INTEGER,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    fetch_count INTEGER NOT NULL
);
CREATE INDEX device_handset ON device (handset_id, last_seen);
CREATE INDEX device_last_seen ON device (last_seen);
