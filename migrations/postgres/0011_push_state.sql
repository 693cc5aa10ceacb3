-- Push states are the four of model::push::PushState, and nothing else.
ALTER TABLE push ADD CONSTRAINT push_state_known CHECK (state IN ('pending', 'sent', 'failed', 'no-target'));
