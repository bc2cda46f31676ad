-- onboard schema, version 2: the reconciler lists pending flows by age.
CREATE INDEX {{prefix}}flows_pending ON {{prefix}}flows (state, created_at);
