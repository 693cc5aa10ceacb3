-- Who may fetch a phone's config (see ARCHITECTURE.md, "Who gets a config").
--
-- Every domain has a secret provisioning token that phones carry in their
-- provisioning URL (/p/<token>/<file>); a rotated token stays valid until
-- previous_token_until (Unix ms) so phones can be moved. The server fills
-- empty tokens with random ones at start (the migration cannot draw them
-- the same way on both databases). require_token: the domain's per-MAC
-- files are served only under its token (or to a phone proving itself with
-- its device credentials or certificate); require_client_cert: only to a
-- phone presenting a device certificate for its MAC.
ALTER TABLE domain ADD COLUMN provisioning_token TEXT NOT NULL DEFAULT '';
ALTER TABLE domain ADD COLUMN previous_token TEXT NOT NULL DEFAULT '';
ALTER TABLE domain ADD COLUMN previous_token_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE domain ADD COLUMN require_token INTEGER NOT NULL DEFAULT 1 CHECK (require_token IN (0, 1));
ALTER TABLE domain ADD COLUMN require_client_cert INTEGER NOT NULL DEFAULT 0 CHECK (require_client_cert IN (0, 1));
CREATE UNIQUE INDEX domain_provisioning_token ON domain (provisioning_token) WHERE provisioning_token <> '';

-- A handset's device credentials: the phone is given them in its config and
-- may fetch with them later (HTTP Basic or Digest, user = its MAC). Not the
-- SIP password; drawn anew whenever the handset's MAC changes.
ALTER TABLE handset ADD COLUMN prov_password TEXT NOT NULL DEFAULT '';
UPDATE handset SET prov_password = lower(hex(randomblob(12)));

-- The domain whose token an unknown phone last fetched under: it is that
-- tenant's to see and claim.
ALTER TABLE device ADD COLUMN token_domain_id INTEGER REFERENCES domain(id) ON DELETE SET NULL;

-- Keys the server draws once and every node shares (the HTTP Digest nonce
-- key of device credentials).
CREATE TABLE server_key (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
