-- How a domain's pushes reach its phones: directly (SIP NOTIFY from us), or
-- relayed by the voice platform, for phones that accept a NOTIFY only from
-- their registrar: Asterisk AMI (PJSIPNotify) or a signed webhook.
ALTER TABLE domain ADD COLUMN push_backend TEXT NOT NULL DEFAULT 'direct';
ALTER TABLE domain ADD COLUMN ami_host TEXT NOT NULL DEFAULT '';
ALTER TABLE domain ADD COLUMN ami_port BIGINT NOT NULL DEFAULT 5038;
ALTER TABLE domain ADD COLUMN ami_user TEXT NOT NULL DEFAULT '';
ALTER TABLE domain ADD COLUMN ami_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE domain ADD COLUMN webhook_url TEXT NOT NULL DEFAULT '';
ALTER TABLE domain ADD COLUMN webhook_secret TEXT NOT NULL DEFAULT '';
