-- A feed of changes to what phones are configured with, written in the
-- transaction of each change: provisioning caches (in every process, on
-- every node) read it to drop what became stale. Pruned after minutes.
CREATE TABLE config_change (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    mac       TEXT,
    domain_id INTEGER
);
CREATE INDEX config_change_at ON config_change (at);
