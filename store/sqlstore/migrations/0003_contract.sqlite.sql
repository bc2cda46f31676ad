-- onboard schema, version 3, SQLite only: admission and completion in one
-- statement each. SQLite runs one writer at a time, and a statement that
-- writes holds the write lock from its start: an INSERT into one of these
-- views runs its trigger atomically. A refusal aborts the statement with a
-- message the store recognizes.
CREATE VIEW {{prefix}}flow_admissions (id, tenant, user_id, provider, source, name, connection_id, reconnect,
    return_to, browser, created_at, expires_at, per_owner, per_tenant)
    AS SELECT '', '', '', '', '', '', '', 0, '', '', 0, 0, 0, 0 WHERE 0;
CREATE TRIGGER {{prefix}}flow_admit INSTEAD OF INSERT ON {{prefix}}flow_admissions
BEGIN
    SELECT RAISE(ABORT, 'onboard: owner cap') WHERE (SELECT count(*) FROM (SELECT 1 FROM {{prefix}}flows
        WHERE tenant = NEW.tenant AND user_id = NEW.user_id AND state = 'pending' AND expires_at >= NEW.created_at
        LIMIT NEW.per_owner)) >= NEW.per_owner;
    SELECT RAISE(ABORT, 'onboard: tenant cap') WHERE (SELECT count(*) FROM (SELECT 1 FROM {{prefix}}flows
        WHERE tenant = NEW.tenant AND state = 'pending' AND expires_at >= NEW.created_at
        LIMIT NEW.per_tenant)) >= NEW.per_tenant;
    INSERT INTO {{prefix}}flows (id, tenant, user_id, provider, source, name, connection_id, reconnect,
            return_to, browser, state, created_at, expires_at)
        VALUES (NEW.id, NEW.tenant, NEW.user_id, NEW.provider, NEW.source, NEW.name, NEW.connection_id, NEW.reconnect,
            NEW.return_to, NEW.browser, 'pending', NEW.created_at, NEW.expires_at);
END;
CREATE VIEW {{prefix}}flow_completions (flow, cleanup, provider, id, tenant, user_id, name, source, state,
    message, flow_id, created_at, updated_at, event_at, checked_at)
    AS SELECT '', 0, '', '', '', '', '', '', '', '', '', 0, 0, 0, 0 WHERE 0;
CREATE TRIGGER {{prefix}}flow_complete INSTEAD OF INSERT ON {{prefix}}flow_completions
BEGIN
    SELECT RAISE(ABORT, 'onboard: unknown flow')
        WHERE NOT EXISTS (SELECT 1 FROM {{prefix}}flows WHERE id = NEW.flow);
    SELECT RAISE(ABORT, 'onboard: flow used')
        WHERE NOT EXISTS (SELECT 1 FROM {{prefix}}flows WHERE id = NEW.flow AND state = 'pending');
    UPDATE {{prefix}}flows SET state = 'done', outcome = NEW.state, message = NEW.message, cleanup = NEW.cleanup,
            connection_id = CASE WHEN NEW.id = '' THEN connection_id ELSE NEW.id END
        WHERE id = NEW.flow;
    INSERT INTO {{prefix}}connections (provider, id, tenant, user_id, name, source, state, message, flow_id,
            created_at, updated_at, event_at, checked_at)
        SELECT NEW.provider, NEW.id, NEW.tenant, NEW.user_id, NEW.name, NEW.source, NEW.state, NEW.message,
            NEW.flow_id, NEW.created_at, NEW.updated_at, NEW.event_at, NEW.checked_at
        WHERE NEW.id <> ''
        ON CONFLICT (provider, id) DO UPDATE SET tenant = excluded.tenant, user_id = excluded.user_id,
            name = excluded.name, source = excluded.source, state = excluded.state, message = excluded.message,
            flow_id = excluded.flow_id, updated_at = excluded.updated_at,
            event_at = max(event_at, excluded.event_at), checked_at = excluded.checked_at;
END;
