-- pgstream-lite: catalog (schema pgstream, the contract) and internal tables (schema pgstream_lite).
-- Every statement is re-runnable: installing twice is a no-op, and it is the upgrade path.

CREATE SCHEMA IF NOT EXISTS pgstream;
CREATE SCHEMA IF NOT EXISTS pgstream_lite;
CREATE SCHEMA IF NOT EXISTS pgstream_changes;

COMMENT ON SCHEMA pgstream IS 'pg_stream SQL API (implemented by pgstream-lite)';
COMMENT ON SCHEMA pgstream_lite IS 'pgstream-lite internals: not for users, may change without notice';
COMMENT ON SCHEMA pgstream_changes IS 'pgstream-lite change buffers (one table per tracked source)';

CREATE TABLE IF NOT EXISTS pgstream.pgs_stream_tables (
    pgs_id              bigserial PRIMARY KEY,
    pgs_relid           oid UNIQUE,
    pgs_name            text NOT NULL,
    pgs_schema          text NOT NULL,
    defining_query      text NOT NULL,
    schedule            text,
    refresh_mode        text NOT NULL DEFAULT 'DIFFERENTIAL'
                        CHECK (refresh_mode IN ('FULL', 'DIFFERENTIAL')),
    status              text NOT NULL DEFAULT 'INITIALIZING'
                        CHECK (status IN ('INITIALIZING', 'ACTIVE', 'SUSPENDED', 'ERROR')),
    is_populated        boolean NOT NULL DEFAULT false,
    data_timestamp      timestamptz,
    frontier            jsonb,
    last_refresh_at     timestamptz,
    consecutive_errors  integer NOT NULL DEFAULT 0,
    needs_reinit        boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pgs_schema, pgs_name)
);

CREATE TABLE IF NOT EXISTS pgstream.pgs_dependencies (
    pgs_id        bigint NOT NULL REFERENCES pgstream.pgs_stream_tables (pgs_id) ON DELETE CASCADE,
    source_relid  oid NOT NULL,
    source_type   text NOT NULL CHECK (source_type IN ('TABLE', 'STREAM_TABLE', 'VIEW')),
    columns_used  text[],
    cdc_mode      text NOT NULL DEFAULT 'TRIGGER' CHECK (cdc_mode IN ('TRIGGER', 'TRANSITIONING', 'WAL')),
    slot_name     text,
    PRIMARY KEY (pgs_id, source_relid)
);
CREATE INDEX IF NOT EXISTS pgs_dependencies_source_relid_idx
    ON pgstream.pgs_dependencies (source_relid);

CREATE TABLE IF NOT EXISTS pgstream.pgs_refresh_history (
    refresh_id          bigserial PRIMARY KEY,
    pgs_id              bigint NOT NULL
                        REFERENCES pgstream.pgs_stream_tables (pgs_id) ON DELETE CASCADE,
    data_timestamp      timestamptz,
    start_time          timestamptz NOT NULL,
    end_time            timestamptz,
    action              text NOT NULL
                        CHECK (action IN ('NO_DATA', 'FULL', 'DIFFERENTIAL', 'REINITIALIZE', 'SKIP')),
    rows_inserted       bigint NOT NULL DEFAULT 0,
    rows_deleted        bigint NOT NULL DEFAULT 0,
    error_message       text,
    status              text NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED')),
    initiated_by        text NOT NULL CHECK (initiated_by IN ('SCHEDULER', 'MANUAL', 'INITIAL')),
    freshness_deadline  timestamptz
);
CREATE INDEX IF NOT EXISTS pgs_refresh_history_pgs_id_idx
    ON pgstream.pgs_refresh_history (pgs_id, refresh_id);

CREATE TABLE IF NOT EXISTS pgstream.pgs_change_tracking (
    source_relid        oid PRIMARY KEY,
    slot_name           text,
    last_consumed_lsn   pg_lsn,
    tracked_by_pgs_ids  bigint[]
);

-- Internal: what refresh needs that the contract's catalog does not hold.
CREATE TABLE IF NOT EXISTS pgstream_lite.st_meta (
    pgs_id       bigint PRIMARY KEY
                 REFERENCES pgstream.pgs_stream_tables (pgs_id) ON DELETE CASCADE,
    body         text NOT NULL,      -- defining query without a trailing semicolon/comments
    columns      text[] NOT NULL,    -- the query's columns stored after __pgs_row_id, in order
    search_path  text NOT NULL       -- search_path at creation, used to evaluate the query
);
-- TimeZone at creation: every refresh evaluates the query (and formats the row text that row ids
-- hash) in it, so results and ids do not depend on which session refreshes.
ALTER TABLE pgstream_lite.st_meta ADD COLUMN IF NOT EXISTS timezone text NOT NULL DEFAULT 'UTC';
-- Aggregate and DISTINCT DIFFERENTIAL stream tables: the defining query with the count of source
-- rows added as a last column __pgs_count (see pgstream_lite.count_query); NULL when the storage
-- table has no __pgs_count (other queries, FULL mode, and tables created before it existed).
ALTER TABLE pgstream_lite.st_meta ADD COLUMN IF NOT EXISTS count_query text;

-- Internal: one row per relation whose changes are captured into a change buffer.
-- kind TRIGGER: row triggers on a base table or on a stream table's storage (its refreshes'
-- writes); kind MARKER (a stream table read by stream tables created by an earlier
-- pgstream-lite): its refresh writes one marker row per refresh that changed it.
CREATE TABLE IF NOT EXISTS pgstream_lite.capture (
    source_relid      oid PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('TRIGGER', 'MARKER')),
    buffer_schema     text NOT NULL,
    buffer_name       text NOT NULL,
    trigger_function  text
);

-- The horizon of the last cleanup of the buffer (see pgstream_lite.cleanup_buffers).
ALTER TABLE pgstream_lite.capture ADD COLUMN IF NOT EXISTS cleaned_to xid8;

CREATE TABLE IF NOT EXISTS pgstream_lite.engine (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    text NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);
-- (its one row is written by the installer: the version is the Python package's)
-- Whether the sql_drop event trigger (35_ddl_events.sql) is installed: only a superuser may
-- create one, so an install by another role goes without it (written by the installer).
ALTER TABLE pgstream_lite.engine ADD COLUMN IF NOT EXISTS drop_event_trigger boolean NOT NULL
    DEFAULT false;

-- Internal: the schema and name of each relation a stream table reads, as they were when it was
-- created, so that a relation dropped later can still be named (a dropped relation is only an
-- oid; dbt's table materialization renames it to <name>__dbt_backup just before dropping it).
-- One row per dependency row, deleted with it.
CREATE TABLE IF NOT EXISTS pgstream_lite.dependency_names (
    pgs_id         bigint NOT NULL,
    source_relid   oid NOT NULL,
    source_schema  text NOT NULL,
    source_name    text NOT NULL,
    PRIMARY KEY (pgs_id, source_relid),
    FOREIGN KEY (pgs_id, source_relid)
        REFERENCES pgstream.pgs_dependencies (pgs_id, source_relid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS dependency_names_source_relid_idx
    ON pgstream_lite.dependency_names (source_relid);

-- Record the names of stream table p_pgs_id's sources (those not recorded yet and still there).
-- SECURITY DEFINER: a role granted the engine's tables before this table existed (an upgraded
-- install) can still create stream tables. It only copies names from the catalogs.
CREATE OR REPLACE FUNCTION pgstream_lite.record_dependency_names(p_pgs_id bigint)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO pgstream_lite.dependency_names (pgs_id, source_relid, source_schema, source_name)
    SELECT d.pgs_id, d.source_relid, n.nspname, c.relname
      FROM pgstream.pgs_dependencies d
      JOIN pg_catalog.pg_class c ON c.oid = d.source_relid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE d.pgs_id = p_pgs_id
    ON CONFLICT DO NOTHING
$$;

-- Upgrade: stream tables created before the names were recorded get those of their sources that
-- are still there.
SELECT pgstream_lite.record_dependency_names(s.pgs_id) FROM pgstream.pgs_stream_tables s;

-- ---------------------------------------------------------------------------------------------
-- Settings (GUCs). Custom settings are read with current_setting(name, true); defaults as in the
-- contract. A live database/role default (ALTER DATABASE/ROLE ... SET, which a long-running
-- scheduler session would otherwise only see after reconnecting) takes precedence over the value
-- the session got at connect time. Order: database+role, role, database, session, default.
CREATE OR REPLACE FUNCTION pgstream_lite.setting(p_name text, p_default text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT substr(x.cfg, length(p_name) + 2)
           FROM (SELECT s.setdatabase, s.setrole, unnest(s.setconfig) AS cfg
                   FROM pg_catalog.pg_db_role_setting s
                  WHERE s.setdatabase IN
                            (0, (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))
                    AND s.setrole IN
                            (0, (SELECT r.oid FROM pg_roles r WHERE r.rolname = session_user))
                    AND NOT (s.setdatabase = 0 AND s.setrole = 0)) x
          WHERE x.cfg LIKE p_name || '=%'
          ORDER BY (x.setdatabase <> 0 AND x.setrole <> 0) DESC, (x.setrole <> 0) DESC
          LIMIT 1),
        nullif(current_setting(p_name, true), ''),
        p_default)
$$;

CREATE OR REPLACE FUNCTION pgstream_lite.setting_int(p_name text, p_default integer)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    v text := pgstream_lite.setting(p_name, p_default::text);
BEGIN
    -- the common case without the exception block's subtransaction (read on every refresh)
    IF v ~ '^\s*[+-]?[0-9]{1,9}\s*$' THEN
        RETURN v::integer;
    END IF;
    BEGIN
        RETURN v::integer;
    EXCEPTION WHEN others THEN
        RETURN p_default;
    END;
END;
$$;

CREATE OR REPLACE FUNCTION pgstream_lite.setting_bool(p_name text, p_default boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE lower(btrim(pgstream_lite.setting(p_name, p_default::text)))
        WHEN 'on' THEN true WHEN 'true' THEN true WHEN 'yes' THEN true WHEN '1' THEN true
        WHEN 't' THEN true
        WHEN 'off' THEN false WHEN 'false' THEN false WHEN 'no' THEN false WHEN '0' THEN false
        WHEN 'f' THEN false
        ELSE p_default END
$$;

-- ---------------------------------------------------------------------------------------------
-- Names: 'table' or 'schema.table', split on the first dot, taken literally (no case folding,
-- no unquoting). Unqualified names resolve to current_schema().
CREATE OR REPLACE FUNCTION pgstream_lite.split_name(p_name text, OUT schema_name text, OUT table_name text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    dot integer;
BEGIN
    IF p_name IS NULL OR p_name = '' THEN
        RAISE EXCEPTION 'invalid argument: stream table name must not be empty';
    END IF;
    dot := strpos(p_name, '.');
    IF dot = 0 THEN
        schema_name := current_schema();
        table_name := p_name;
        IF schema_name IS NULL THEN
            RAISE EXCEPTION 'invalid argument: no current schema to resolve the name %', p_name;
        END IF;
    ELSE
        schema_name := substr(p_name, 1, dot - 1);
        table_name := substr(p_name, dot + 1);
    END IF;
    IF schema_name = '' OR table_name = '' THEN
        RAISE EXCEPTION 'invalid argument: invalid stream table name: %', p_name;
    END IF;
END;
$$;

-- Catalog row of a stream table by user-facing name; error `stream table not found: ...`.
CREATE OR REPLACE FUNCTION pgstream_lite.find_st(p_name text)
RETURNS pgstream.pgs_stream_tables LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_schema text;
    v_table text;
    st pgstream.pgs_stream_tables;
BEGIN
    SELECT s.schema_name, s.table_name INTO v_schema, v_table FROM pgstream_lite.split_name(p_name) s;
    SELECT * INTO st FROM pgstream.pgs_stream_tables t
     WHERE t.pgs_schema = v_schema AND t.pgs_name = v_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream table not found: %.%', v_schema, v_table;
    END IF;
    RETURN st;
END;
$$;

-- schema.name of a relation; of a dropped one, the name a stream table recorded for it (see
-- dependency_names) and its oid: `public.raw (dropped, oid 16385)`.
CREATE OR REPLACE FUNCTION pgstream_lite.relname(p_relid oid)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT n.nspname || '.' || c.relname
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = p_relid),
        (SELECT x.source_schema || '.' || x.source_name || ' (dropped, oid ' || p_relid || ')'
           FROM pgstream_lite.dependency_names x WHERE x.source_relid = p_relid LIMIT 1),
        '(dropped relation ' || p_relid || ')')
$$;
