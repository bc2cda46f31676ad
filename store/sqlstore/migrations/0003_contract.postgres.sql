-- onboard schema, version 3, PostgreSQL only: admission in one statement.
-- A start calls {{prefix}}create_flow, which takes a lock on the tenant for
-- the rest of its transaction, so that concurrent starts of one tenant take
-- turns; each statement of the function then sees every flow committed
-- before it, counts the owner's and the tenant's pending flows unexpired at
-- the new flow's creation, and saves the flow only below both caps. It
-- returns 'ok', or 'owner' or 'tenant' for the cap that refused the flow.
-- It needs READ COMMITTED, PostgreSQL's default: under a stricter level
-- the counts would not see what was committed while it waited.
CREATE FUNCTION {{prefix}}create_flow(
    p_id TEXT, p_tenant TEXT, p_user_id TEXT, p_provider TEXT, p_source TEXT, p_name TEXT,
    p_connection_id TEXT, p_reconnect INTEGER, p_return_to TEXT, p_browser TEXT,
    p_created_at BIGINT, p_expires_at BIGINT, p_per_owner BIGINT, p_per_tenant BIGINT
) RETURNS TEXT LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'onboard: {{prefix}}create_flow needs the READ COMMITTED isolation level, not %',
            current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('{{prefix}}flows'), hashtext(p_tenant));
    IF (SELECT count(*) FROM (SELECT 1 FROM {{prefix}}flows
            WHERE tenant = p_tenant AND user_id = p_user_id AND state = 'pending' AND expires_at >= p_created_at
            LIMIT p_per_owner) AS owner_flows) >= p_per_owner THEN
        RETURN 'owner';
    END IF;
    IF (SELECT count(*) FROM (SELECT 1 FROM {{prefix}}flows
            WHERE tenant = p_tenant AND state = 'pending' AND expires_at >= p_created_at
            LIMIT p_per_tenant) AS tenant_flows) >= p_per_tenant THEN
        RETURN 'tenant';
    END IF;
    INSERT INTO {{prefix}}flows (id, tenant, user_id, provider, source, name, connection_id, reconnect,
            return_to, browser, state, created_at, expires_at)
        VALUES (p_id, p_tenant, p_user_id, p_provider, p_source, p_name, p_connection_id, p_reconnect,
            p_return_to, p_browser, 'pending', p_created_at, p_expires_at);
    RETURN 'ok';
END
$$;
