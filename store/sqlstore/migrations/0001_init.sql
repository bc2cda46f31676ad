-- onboard schema, version 1. {{prefix}} is the table prefix (default "onboard_").
-- Times are Unix microseconds (BIGINT), the same on PostgreSQL and SQLite.
CREATE TABLE {{prefix}}flows (
    id            TEXT    PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    provider      TEXT    NOT NULL,
    source        TEXT    NOT NULL DEFAULT '',
    name          TEXT    NOT NULL DEFAULT '',
    connection_id TEXT    NOT NULL DEFAULT '',
    reconnect     INTEGER NOT NULL DEFAULT 0,
    return_url    TEXT    NOT NULL,
    return_to     TEXT    NOT NULL DEFAULT '',
    data          TEXT    NOT NULL DEFAULT '{}',
    state         TEXT    NOT NULL,
    outcome       TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX {{prefix}}flows_expires ON {{prefix}}flows (expires_at);
CREATE INDEX {{prefix}}flows_owner ON {{prefix}}flows (tenant, user_id, state);
CREATE TABLE {{prefix}}connections (
    provider   TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    tenant     TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    name       TEXT   NOT NULL DEFAULT '',
    source     TEXT   NOT NULL DEFAULT '',
    state      TEXT   NOT NULL,
    message    TEXT   NOT NULL DEFAULT '',
    flow_id    TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider, id)
);
CREATE INDEX {{prefix}}connections_tenant ON {{prefix}}connections (tenant, created_at);
