-- Whether claiming a phone for an extension the domain does not have yet
-- creates that handset (installers' one-step claim), or is refused.
ALTER TABLE domain ADD COLUMN claim_creates BIGINT NOT NULL DEFAULT 0;
