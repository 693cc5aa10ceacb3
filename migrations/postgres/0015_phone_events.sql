-- Phones report their calls (README "Phones report their calls"): each
-- handset's config names action URLs of ours that carry event_token, a
-- secret of its own (not the SIP password, not the device credentials),
-- drawn anew whenever the handset's MAC changes.
ALTER TABLE handset ADD COLUMN event_token TEXT NOT NULL DEFAULT '';
UPDATE handset SET event_token = substr(md5(gen_random_uuid()::text || gen_random_uuid()::text), 1, 24);
CREATE UNIQUE INDEX handset_event_token ON handset (event_token) WHERE event_token <> '';

-- What ordering a phone's events needs (model::status::HandsetStatus::
-- apply_event): the current call's id as the phone names it, the stage it
-- reached (1 ringing/calling, 2 established/held/resumed), when it was
-- established (Unix ms; the duration counts from there), when the last
-- event was received, the ids of recently ended calls (space-separated,
-- newest first: a late event of theirs is ignored), and the DND and
-- call-forward flags the phone reported.
ALTER TABLE handset_status ADD COLUMN call_id TEXT NOT NULL DEFAULT '';
ALTER TABLE handset_status ADD COLUMN call_stage BIGINT NOT NULL DEFAULT 0;
ALTER TABLE handset_status ADD COLUMN call_started_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE handset_status ADD COLUMN event_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE handset_status ADD COLUMN ended_calls TEXT NOT NULL DEFAULT '';
ALTER TABLE handset_status ADD COLUMN dnd BIGINT NOT NULL DEFAULT 0 CHECK (dnd IN (0, 1));
ALTER TABLE handset_status ADD COLUMN forward BIGINT NOT NULL DEFAULT 0 CHECK (forward IN (0, 1));
