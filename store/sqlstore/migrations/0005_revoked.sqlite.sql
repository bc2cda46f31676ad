-- onboard schema, version 5, SQLite only: a completion never connects a
-- revoked connection again. The completion aborts, and changes nothing,
-- when the connection it saves is stored as revoked (PostgreSQL's
-- completion, one statement the store sends, does the same).
DROP TRIGGER {{prefix}}flow_complete;
CREATE TRIGGER {{prefix}}flow_complete INSTEAD OF INSERT ON {{prefix}}flow_completions
BEGIN
    SELECT RAISE(ABORT, 'onboard: unknown flow')
        WHERE NOT EXISTS (SELECT 1 FROM {{prefix}}flows WHERE id = NEW.flow);
    SELECT RAISE(ABORT, 'onboard: flow used')
        WHERE NOT EXISTS (SELECT 1 FROM {{prefix}}flows WHERE id = NEW.flow AND state = 'pending');
    SELECT RAISE(ABORT, 'onboard: revoked')
        WHERE NEW.id <> '' AND EXISTS (SELECT 1 FROM {{prefix}}connections
            WHERE provider = NEW.provider AND id = NEW.id AND state = 'revoked');
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
