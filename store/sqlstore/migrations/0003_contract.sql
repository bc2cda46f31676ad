-- onboard schema, version 3. A flow keeps a digest of the browser that
-- started it and its result; nothing a provider returns at the start.
-- Connections keep the provider's time of their last event and when they
-- were last checked. A zero time is -62135596800000000 (0001-01-01 UTC).
ALTER TABLE {{prefix}}flows DROP COLUMN data;
ALTER TABLE {{prefix}}flows DROP COLUMN return_url;
ALTER TABLE {{prefix}}flows ADD COLUMN browser TEXT NOT NULL DEFAULT '';
ALTER TABLE {{prefix}}flows ADD COLUMN message TEXT NOT NULL DEFAULT '';
ALTER TABLE {{prefix}}flows ADD COLUMN cleanup INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}connections ADD COLUMN event_at BIGINT NOT NULL DEFAULT -62135596800000000;
ALTER TABLE {{prefix}}connections ADD COLUMN checked_at BIGINT NOT NULL DEFAULT -62135596800000000;
DROP INDEX {{prefix}}flows_expires;
DROP INDEX {{prefix}}flows_owner;
DROP INDEX {{prefix}}flows_pending;
-- Admission counts an owner's and a tenant's unexpired pending flows.
CREATE INDEX {{prefix}}flows_owner_pending ON {{prefix}}flows (tenant, user_id, expires_at) WHERE state = 'pending';
CREATE INDEX {{prefix}}flows_tenant_pending ON {{prefix}}flows (tenant, expires_at) WHERE state = 'pending';
-- The runner finds expired pending flows, flows to clean up, and done
-- flows to prune.
CREATE INDEX {{prefix}}flows_pending_expires ON {{prefix}}flows (expires_at) WHERE state = 'pending';
CREATE INDEX {{prefix}}flows_cleanup ON {{prefix}}flows (created_at) WHERE cleanup = 1;
CREATE INDEX {{prefix}}flows_done_expires ON {{prefix}}flows (expires_at) WHERE state = 'done' AND cleanup = 0;
-- The runner checks connections least recently checked first, and prunes
-- detached records (events of connections whose flow has not completed).
CREATE INDEX {{prefix}}connections_checked ON {{prefix}}connections (checked_at);
CREATE INDEX {{prefix}}connections_detached ON {{prefix}}connections (updated_at) WHERE tenant = '' OR user_id = '';
