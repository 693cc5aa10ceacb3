-- Extra vendor settings, layered domain < model < handset, as JSON objects
-- of key → value (model_settings: model → object).
ALTER TABLE domain ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE domain ADD COLUMN model_settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE handset ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
