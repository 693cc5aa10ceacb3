-- Core schema: tenants, API users, handsets, their status, and the audit log.
-- Times are Unix milliseconds; flags are integers 0/1 (sqlx's Any driver
-- maps no boolean type of SQLite). Keep in step with migrations/postgres.

CREATE TABLE domain (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    sip_server    TEXT    NOT NULL DEFAULT '',
    sip_port      INTEGER NOT NULL DEFAULT 5060,
    sip_transport TEXT    NOT NULL DEFAULT 'udp',
    timezone      TEXT    NOT NULL DEFAULT 'UTC',
    ntp_server    TEXT    NOT NULL DEFAULT 'pool.ntp.org',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE api_user (
    id            INTEGER PRIMARY KEY,
    domain_id     INTEGER NOT NULL REFERENCES domain(id),
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    superuser     INTEGER NOT NULL DEFAULT 0 CHECK (superuser IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE handset (
    id              INTEGER PRIMARY KEY,
    domain_id       INTEGER NOT NULL REFERENCES domain(id),
    extensionnumber TEXT    NOT NULL,
    name            TEXT    NOT NULL DEFAULT '',
    password        TEXT    NOT NULL,
    location        TEXT    NOT NULL DEFAULT '',
    outgoingcli     TEXT    NOT NULL DEFAULT '',
    recording       INTEGER NOT NULL DEFAULT 0 CHECK (recording IN (0, 1)),
    notes           TEXT    NOT NULL DEFAULT '',
    mac             TEXT    UNIQUE,
    model           TEXT,
    revision        INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CONSTRAINT handset_extension_key UNIQUE (domain_id, extensionnumber)
);

CREATE TABLE handset_status (
    handset_id             INTEGER PRIMARY KEY REFERENCES handset(id) ON DELETE CASCADE,
    state                  TEXT    NOT NULL,
    calldirection          TEXT    NOT NULL,
    calldurationseconds    INTEGER NOT NULL,
    otherpartyphonenumber  TEXT    NOT NULL,
    app                    TEXT    NOT NULL,
    registration_address   TEXT    NOT NULL DEFAULT '',
    registration_transport TEXT    NOT NULL DEFAULT 'udp',
    updated_at             INTEGER NOT NULL
);

CREATE TABLE audit (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    domain_id       INTEGER NOT NULL REFERENCES domain(id),
    action          TEXT    NOT NULL,
    extensionnumber TEXT,
    client_ip       TEXT    NOT NULL,
    fields          TEXT    NOT NULL
);
CREATE INDEX audit_domain_id ON audit (domain_id, id);
