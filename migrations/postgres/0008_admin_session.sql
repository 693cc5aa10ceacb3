-- Sessions of the admin web UI. The cookie carries a random token; only its
-- SHA-256 is stored, so a copy of the database opens no session. Each
-- session has its own CSRF token, and the domain a superuser is acting in.
CREATE TABLE admin_session (
    token_hash TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES api_user(id) ON DELETE CASCADE,
    domain_id  BIGINT  NOT NULL REFERENCES domain(id) ON DELETE CASCADE,
    csrf       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX admin_session_expires ON admin_session (expires_at);
CREATE INDEX admin_session_user ON admin_session (user_id);
-- The UI shows a handset's history from the audit log.
CREATE INDEX audit_extension ON audit (domain_id, extensionnumber, id);
