-- The networks a domain's phones fetch from (CIDRs, comma-separated): the
-- domain's users see the unknown phones whose last fetch came from one of
-- them, so installers who are not superusers can claim what they plug in.
ALTER TABLE domain ADD COLUMN site_networks TEXT NOT NULL DEFAULT '';
