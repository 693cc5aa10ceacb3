-- A handset's own IANA time zone (checked against the IANA database the
-- server bundles); '' (or NULL) means its domain's zone.
ALTER TABLE handset ADD COLUMN timezone TEXT NOT NULL DEFAULT '';
