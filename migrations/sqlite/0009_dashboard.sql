-- Indexes for the read-only dashboard (SPEC §12), so each of its counts reads an index and
-- never the table, however many enrollments there are.
--
-- `enrollments_campaign_state` answers the campaign list's totals (state and exit reason per
-- campaign), the count waiting at each step (`state = 'active'`, by `step_id`) and the goals
-- reached at each step, from the index alone. `enrollments_campaign_enrolled` finds a
-- campaign's enrollments of the last N days for the funnel. `messages_campaign_step` counts
-- messages per step and state from the index alone. `events_email_step` lets the opens and
-- clicks per step be counted from the email events themselves (then one primary-key lookup
-- each for the campaign) instead of probing the events of every enrollment of the campaign.
CREATE INDEX enrollments_campaign_state ON enrollments (campaign_id, state, exit_reason, step_id);
CREATE INDEX enrollments_campaign_enrolled ON enrollments (campaign_id, enrolled_at);
CREATE INDEX messages_campaign_step ON messages (campaign_id, step_id, state);
CREATE INDEX events_email_step ON events (name, step_id, enrollment_id) WHERE enrollment_id IS NOT NULL;
