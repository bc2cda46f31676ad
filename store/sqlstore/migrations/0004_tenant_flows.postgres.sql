-- onboard schema, version 4, PostgreSQL only: admission without counting a
-- tenant's flows. Counting them visits each pending flow's row (rows
-- written since the last VACUUM are not known to be visible from the index
-- alone), which made a start's cost grow with the tenant's pending flows.
-- {{prefix}}tenant_flows keeps, for each tenant that has started a flow,
-- how many of its flows are pending and counted, expired or not: a flow is
-- counted (flows.counted = 1) when {{prefix}}create_flow saves it, and the
-- statement that moves a counted flow from pending to done (sqlstore's
-- CompleteFlow) takes it off. Nothing else may add or remove pending flows.
--
-- The table is locked while the pending flows are counted, so that no
-- start or return writes a flow meanwhile. A start that began the version
-- 3 function before this and saves its flow after it saves it uncounted:
-- such a flow is left out of the count until it ends, and never taken off.
LOCK TABLE {{prefix}}flows IN ACCESS EXCLUSIVE MODE;
ALTER TABLE {{prefix}}flows ADD COLUMN counted INTEGER NOT NULL DEFAULT 0;
UPDATE {{prefix}}flows SET counted = 1 WHERE state = 'pending';
CREATE TABLE {{prefix}}tenant_flows (
    tenant  TEXT   PRIMARY KEY,
    pending BIGINT NOT NULL
);
INSERT INTO {{prefix}}tenant_flows (tenant, pending)
    SELECT tenant, count(*) FROM {{prefix}}flows WHERE state = 'pending' GROUP BY tenant;
-- A start now locks its tenant's row of {{prefix}}tenant_flows, adding one,
-- for the rest of its transaction, so that concurrent starts of one tenant
-- still take turns, and returns of its flows wait for it. It then counts
-- the owner's pending flows unexpired at the new flow's creation, and the
-- tenant's only when the tenant has as many pending flows as its cap,
-- counting expired ones; a refused flow takes its one off again. It returns
-- 'ok', or 'owner' or 'tenant' for the cap that refused the flow, as
-- before, and needs READ COMMITTED, as before.
CREATE OR REPLACE FUNCTION {{prefix}}create_flow(
    p_id TEXT, p_tenant TEXT, p_user_id TEXT, p_provider TEXT, p_source TEXT, p_name TEXT,
    p_connection_id TEXT, p_reconnect INTEGER, p_return_to TEXT, p_browser TEXT,
    p_created_at BIGINT, p_expires_at BIGINT, p_per_owner BIGINT, p_per_tenant BIGINT
) RETURNS TEXT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_pending BIGINT;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'onboard: {{prefix}}create_flow needs the READ COMMITTED isolation level, not %',
            current_setting('transaction_isolation');
    END IF;
    INSERT INTO {{prefix}}tenant_flows AS t (tenant, pending) VALUES (p_tenant, 1)
        ON CONFLICT (tenant) DO UPDATE SET pending = t.pending + 1
        RETURNING t.pending INTO v_pending;
    IF (SELECT count(*) FROM (SELECT 1 FROM {{prefix}}flows
            WHERE tenant = p_tenant AND user_id = p_user_id AND state = 'pending' AND expires_at >= p_created_at
            LIMIT p_per_owner) AS owner_flows) >= p_per_owner THEN
        UPDATE {{prefix}}tenant_flows SET pending = pending - 1 WHERE tenant = p_tenant;
        RETURN 'owner';
    END IF;
    IF v_pending > p_per_tenant AND (SELECT count(*) FROM (SELECT 1 FROM {{prefix}}flows
            WHERE tenant = p_tenant AND state = 'pending' AND expires_at >= p_created_at
            LIMIT p_per_tenant) AS tenant_flows) >= p_per_tenant THEN
        UPDATE {{prefix}}tenant_flows SET pending = pending - 1 WHERE tenant = p_tenant;
        RETURN 'tenant';
    END IF;
    INSERT INTO {{prefix}}flows (id, tenant, user_id, provider, source, name, connection_id, reconnect,
            return_to, browser, state, created_at, expires_at, counted)
        VALUES (p_id, p_tenant, p_user_id, p_provider, p_source, p_name, p_connection_id, p_reconnect,
            p_return_to, p_browser, 'pending', p_created_at, p_expires_at, 1);
    RETURN 'ok';
END
$$;
