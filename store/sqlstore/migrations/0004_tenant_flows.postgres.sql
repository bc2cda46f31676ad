-- onboard schema, version 4, PostgreSQL only: admission without counting a
-- tenant's flows on every start. Counting them visits each pending flow's
-- row (rows written since the last VACUUM are not known to be visible from
-- the index alone), so a start cost more the more flows its tenant had
-- pending.
--
-- {{prefix}}tenant_flows keeps a bound for each tenant that has started a
-- flow: at least as many as its pending flows, expired or not, or 2^62
-- (4611686018427387904) when not known. Each start adds one; nothing takes
-- one off, since a flow that ends only makes the bound looser. While the
-- bound stays within the tenant's cap, a start need not count the tenant's
-- flows; once it passes the cap, the start counts them (up to the cap) and
-- the bound becomes that count. The table starts empty, so each tenant's
-- first start counts (when the tenant has a cap).
--
-- Only create_flow may add pending flows: a flow inserted by other means
-- is missed by the bound until the tenant's next count. So is a flow that
-- a version 3 call, already running when this migration commits, saves
-- after a version 4 call of the same tenant has counted: each such call
-- can let its tenant go over its cap by one flow, until the tenant's bound
-- next passes the cap. Apply this version when few starts are running, or
-- with the instances stopped, where that matters.
CREATE TABLE {{prefix}}tenant_flows (
    tenant TEXT   PRIMARY KEY,
    bound  BIGINT NOT NULL
);
-- A start adds one to its tenant's bound, which locks the tenant's row for
-- the rest of its transaction, so that concurrent starts of one tenant take
-- turns; each later statement of the function sees every flow committed
-- before it. When the bound has passed the tenant's cap, it counts the
-- tenant's pending flows, latest expiry first, up to the cap: the
-- unexpired ones at the new flow's creation decide, and all of them, with
-- this one, are the new bound (or 2^62 when the count reached the cap).
-- The flow is saved only while the owner has fewer unexpired pending flows
-- than its cap. It returns 'ok', or 'owner' or 'tenant' for the cap that
-- refused the flow ('owner' when both did). A refused start saved nothing
-- that must survive a crash (only the bound, which may be looser), so its
-- commit does not wait for the WAL flush: a tenant at its cap answers its
-- refusals without holding its row through a disk write each. It needs
-- READ COMMITTED, PostgreSQL's default, and raises an error under a
-- stricter level.
CREATE OR REPLACE FUNCTION {{prefix}}create_flow(
    p_id TEXT, p_tenant TEXT, p_user_id TEXT, p_provider TEXT, p_source TEXT, p_name TEXT,
    p_connection_id TEXT, p_reconnect INTEGER, p_return_to TEXT, p_browser TEXT,
    p_created_at BIGINT, p_expires_at BIGINT, p_per_owner BIGINT, p_per_tenant BIGINT
) RETURNS TEXT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_bound     BIGINT;
    v_pending   BIGINT;
    v_unexpired BIGINT;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'onboard: {{prefix}}create_flow needs the READ COMMITTED isolation level, not %',
            current_setting('transaction_isolation');
    END IF;
    INSERT INTO {{prefix}}tenant_flows AS t (tenant, bound) VALUES (p_tenant, 4611686018427387904)
        ON CONFLICT (tenant) DO UPDATE SET bound = t.bound + 1
        RETURNING t.bound INTO v_bound;
    IF v_bound > p_per_tenant THEN
        SELECT count(*), count(*) FILTER (WHERE expires_at >= p_created_at) INTO v_pending, v_unexpired
            FROM (SELECT expires_at FROM {{prefix}}flows WHERE tenant = p_tenant AND state = 'pending'
                ORDER BY expires_at DESC LIMIT p_per_tenant) AS tenant_flows;
        UPDATE {{prefix}}tenant_flows
            SET bound = CASE WHEN v_pending < p_per_tenant THEN v_pending + 1 ELSE 4611686018427387904 END
            WHERE tenant = p_tenant;
        IF v_unexpired >= p_per_tenant THEN
            PERFORM set_config('synchronous_commit', 'off', true);
            IF (SELECT count(*) FROM (SELECT 1 FROM {{prefix}}flows
                    WHERE tenant = p_tenant AND user_id = p_user_id AND state = 'pending' AND expires_at >= p_created_at
                    LIMIT p_per_owner) AS owner_flows) >= p_per_owner THEN
                RETURN 'owner';
            END IF;
            RETURN 'tenant';
        END IF;
    END IF;
    INSERT INTO {{prefix}}flows (id, tenant, user_id, provider, source, name, connection_id, reconnect,
            return_to, browser, state, created_at, expires_at)
        SELECT p_id, p_tenant, p_user_id, p_provider, p_source, p_name, p_connection_id, p_reconnect,
            p_return_to, p_browser, 'pending', p_created_at, p_expires_at
        WHERE (SELECT count(*) FROM (SELECT 1 FROM {{prefix}}flows
            WHERE tenant = p_tenant AND user_id = p_user_id AND state = 'pending' AND expires_at >= p_created_at
            LIMIT p_per_owner) AS owner_flows) < p_per_owner;
    IF NOT FOUND THEN
        PERFORM set_config('synchronous_commit', 'off', true);
        RETURN 'owner';
    END IF;
    RETURN 'ok';
END
$$;
