-- Who may fetch a phone's config (see ARCHITECTURE.md, "Who gets a config").
-- Keep in step with migrations/sqlite/0010_zero_trust.sql, which says more.
ALTER TABLE domain ADD COLUMN provisioning_token TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE domain ADD COLUMN previous_token TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE domain ADD COLUMN previous_token_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE domain ADD COLUMN require_token BIGINT NOT NULL DEFAULT 1 CHECK (require_token IN (0, 1));
ALTER TABLE domain ADD COLUMN require_client_cert BIGINT NOT NULL DEFAULT 0 CHECK (require_client_cert IN (0, 1));
CREATE UNIQUE INDEX domain_provisioning_token ON domain (provisioning_token) WHERE provisioning_token <> '';

-- gen_random_uuid() draws from pg_strong_random (PostgreSQL 13+).
ALTER TABLE handset ADD COLUMN prov_password TEXT NOT NULL DEFAULT '';
UPDATE handset SET prov_password = substr(md5(gen_random_uuid()::text || gen_random_uuid()::text), 1, 24);

ALTER TABLE device ADD COLUMN token_domain_id BIGINT REFERENCES domain(id) ON DELETE SET NULL;

CREATE TABLE server_key (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
