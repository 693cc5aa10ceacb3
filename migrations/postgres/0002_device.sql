-- Every MAC that asked for a per-phone file, known or not. handset_id is the
-- handset the last fetch was served as (NULL: unknown, for installers to
-- claim). Unknown rows are capped by the server (oldest evicted).
CREATE TABLE device (
    mac         TEXT    COLLATE "C" PRIMARY KEY,
    handset_id  BIGINT  REFERENCES handset(id) ON DELETE SET NULL,
    ip          TEXT    NOT NULL,
    user_agent  TEXT    NOT NULL,
    vendor      TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    firmware    TEXT    NOT NULL,
    last_file   TEXT    NOT NULL,
    protocol    TEXT    NOT NULL,
    revision    BIGINT, 
    first_seen  BIGINT  NOT NULL,
    last_seen   BIGINT  NOT NULL,
    fetch_count BIGINT  NOT NULL
);
CREATE INDEX device_handset ON device (handset_id, last_seen);
CREATE INDEX device_last_seen ON device (last_seen);
