-- pgstream-lite: schedules (durations and cron) and row-id hashes.

-- Parse a duration: `30s`, `5m`, `1h30m`, `2d`, `1w` or a bare integer of seconds (an optional
-- sign, as pg_stream 0.1 reads it). Returns the seconds, or NULL with `error` naming the problem
-- in pg_stream 0.1's words (the caller adds `invalid argument: `).
CREATE OR REPLACE FUNCTION pgstream_lite.duration_parse(p_text text, OUT seconds bigint, OUT error text)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    s text := btrim(coalesce(p_text, ''), E' \t\r\n\v\f');
    i integer := 1;
    n integer;
    ch text;
    num text := '';
    total numeric := 0;
    found_unit boolean := false;
    max_i64 constant numeric := 9223372036854775807;
BEGIN
    IF s = '' THEN
        error := 'schedule cannot be empty';
        RETURN;
    END IF;
    -- a bare integer that fits in 64 bits: seconds
    IF s ~ '^[+-]?[0-9]+$' AND length(ltrim(s, '+-0')) <= 19
       AND s::numeric BETWEEN -max_i64 - 1 AND max_i64 THEN
        IF s::numeric < 0 THEN
            error := format('schedule cannot be negative: ''%s''', s);
            RETURN;
        END IF;
        seconds := s::bigint;
        RETURN;
    END IF;
    -- one number and one unit, the common case: the loop below, without walking characters
    -- (a refresh parses its schedule for the history's freshness deadline)
    IF s ~ '^[0-9]{1,12}[smhdw]$' THEN
        seconds := left(s, -1)::bigint * CASE right(s, 1)
            WHEN 's' THEN 1 WHEN 'm' THEN 60 WHEN 'h' THEN 3600 WHEN 'd' THEN 86400 ELSE 604800 END;
        RETURN;
    END IF;
    n := length(s);
    WHILE i <= n LOOP
        ch := substr(s, i, 1);
        IF ch ~ '^[0-9]$' THEN
            num := num || ch;
        ELSE
            IF ch NOT IN ('s', 'm', 'h', 'd', 'w') THEN
                error := format('invalid duration unit ''%s'' in ''%s''. Use s (seconds), '
                                'm (minutes), h (hours), d (days), w (weeks). '
                                'Example: ''5m'', ''1h30m'', ''2d''', ch, s);
                RETURN;
            END IF;
            IF num = '' THEN
                error := format('expected a number before ''%s'' in duration ''%s''', ch, s);
                RETURN;
            END IF;
            IF length(ltrim(num, '0')) > 19 OR num::numeric > max_i64 THEN
                error := format('invalid number ''%s'' in duration ''%s''', num, s);
                RETURN;
            END IF;
            total := total + num::numeric * CASE ch
                WHEN 's' THEN 1 WHEN 'm' THEN 60 WHEN 'h' THEN 3600
                WHEN 'd' THEN 86400 ELSE 604800 END;
            num := '';
            found_unit := true;
        END IF;
        i := i + 1;
    END LOOP;
    IF num <> '' THEN
        IF found_unit THEN
            error := format('trailing digits ''%s'' without a unit in duration ''%s''. '
                            'Append s, m, h, d, or w. Example: ''1h30m''', num, s);
        ELSE
            error := format('invalid duration ''%s''', s);
        END IF;
        RETURN;
    END IF;
    IF total > max_i64 THEN
        -- (pg_stream 0.1 overflows here)
        error := format('duration ''%s'' is too large', s);
        RETURN;
    END IF;
    seconds := total::bigint;
END;
$$;

-- Contract: seconds of a duration string; NULL for anything that is not one.
CREATE OR REPLACE FUNCTION pgstream.parse_duration_seconds(text)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (pgstream_lite.duration_parse($1)).seconds
$$;

-- ---------------------------------------------------------------------------------------------
-- Cron. 5 fields (minute hour day-of-month month day-of-week) or 6 fields (second first), or
-- @hourly @daily @weekly @monthly @yearly @annually. Fields: *, numbers, ranges a-b, steps */n
-- a-b/n a/n, lists; month and weekday names (JAN..DEC, SUN..SAT); weekday 7 = Sunday.
-- Evaluated in UTC.
CREATE OR REPLACE FUNCTION pgstream_lite.cron_is_cron(p_schedule text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT left(btrim(p_schedule), 1) = '@' OR strpos(btrim(p_schedule), ' ') > 0
$$;

CREATE OR REPLACE FUNCTION pgstream_lite.cron_field(p_field text, p_lo integer, p_hi integer, p_what text)
RETURNS integer[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    part text;
    m text[];
    a integer;
    b integer;
    step integer;
    v integer;
    result integer[] := '{}';
    names text[];
    f text := upper(p_field);
BEGIN
    IF p_what = 'month' THEN
        names := ARRAY['JAN','FEB','MAR','APR','MAY','JUN','JUL','AUG','SEP','OCT','NOV','DEC'];
        FOR v IN 1..12 LOOP f := replace(f, names[v], v::text); END LOOP;
    ELSIF p_what = 'day-of-week' THEN
        names := ARRAY['SUN','MON','TUE','WED','THU','FRI','SAT'];
        FOR v IN 1..7 LOOP f := replace(f, names[v], (v - 1)::text); END LOOP;
    END IF;
    IF f = '?' AND p_what IN ('day-of-month', 'day-of-week') THEN
        f := '*';
    END IF;
    FOREACH part IN ARRAY string_to_array(f, ',') LOOP
        m := regexp_match(part, '^(\*|([0-9]+)(-([0-9]+))?)(/([0-9]+))?$');
        IF m IS NULL THEN
            RAISE EXCEPTION 'bad % field ''%''', p_what, p_field;
        END IF;
        IF m[1] = '*' THEN
            a := p_lo; b := p_hi;
        ELSE
            IF length(m[2]) > 4 OR length(coalesce(m[4], '')) > 4 THEN
                RAISE EXCEPTION '% value out of range in ''%'' (allowed %-%)', p_what, p_field, p_lo, p_hi;
            END IF;
            a := m[2]::integer;
            b := coalesce(m[4]::integer, CASE WHEN m[6] IS NOT NULL THEN p_hi ELSE a END);
        END IF;
        IF length(coalesce(m[6], '')) > 4 THEN
            RAISE EXCEPTION 'bad step in % field ''%''', p_what, p_field;
        END IF;
        step := coalesce(m[6]::integer, 1);
        IF step < 1 THEN
            RAISE EXCEPTION 'step must be at least 1 in % field ''%''', p_what, p_field;
        END IF;
        IF a < p_lo OR a > p_hi OR b < p_lo OR b > p_hi THEN
            RAISE EXCEPTION '% value out of range in ''%'' (allowed %-%)', p_what, p_field, p_lo, p_hi;
        END IF;
        IF a > b THEN
            RAISE EXCEPTION 'range start after end in % field ''%''', p_what, p_field;
        END IF;
        v := a;
        WHILE v <= b LOOP
            result := result || CASE WHEN p_what = 'day-of-week' AND v = 7 THEN 0 ELSE v END;
            v := v + step;
        END LOOP;
    END LOOP;
    IF cardinality(result) = 0 THEN
        RAISE EXCEPTION 'empty % field', p_what;
    END IF;
    RETURN result;
END;
$$;

CREATE OR REPLACE FUNCTION pgstream_lite.cron_parse(
    p_expr text,
    OUT secs integer[], OUT mins integer[], OUT hours integer[], OUT doms integer[],
    OUT months integer[], OUT dows integer[], OUT dom_any boolean, OUT dow_any boolean,
    OUT has_seconds boolean)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    e text := lower(btrim(p_expr));
    f text[];
BEGIN
    e := CASE e
        WHEN '@hourly' THEN '0 * * * *'
        WHEN '@daily' THEN '0 0 * * *'
        WHEN '@midnight' THEN '0 0 * * *'
        WHEN '@weekly' THEN '0 0 * * 0'
        WHEN '@monthly' THEN '0 0 1 * *'
        WHEN '@yearly' THEN '0 0 1 1 *'
        WHEN '@annually' THEN '0 0 1 1 *'
        ELSE e END;
    IF left(e, 1) = '@' THEN
        RAISE EXCEPTION 'unknown alias % (use @hourly, @daily, @weekly, @monthly, @yearly or @annually)', e;
    END IF;
    f := regexp_split_to_array(e, '\s+');
    IF cardinality(f) = 5 THEN
        f := ARRAY['0'] || f;
        has_seconds := false;
    ELSIF cardinality(f) = 6 THEN
        has_seconds := true;
    ELSE
        RAISE EXCEPTION 'expected 5 or 6 fields, got %', cardinality(f);
    END IF;
    secs := pgstream_lite.cron_field(f[1], 0, 59, 'second');
    mins := pgstream_lite.cron_field(f[2], 0, 59, 'minute');
    hours := pgstream_lite.cron_field(f[3], 0, 23, 'hour');
    doms := pgstream_lite.cron_field(f[4], 1, 31, 'day-of-month');
    months := pgstream_lite.cron_field(f[5], 1, 12, 'month');
    dows := pgstream_lite.cron_field(f[6], 0, 7, 'day-of-week');
    dom_any := f[4] IN ('*', '?');
    dow_any := f[6] IN ('*', '?');
END;
$$;

-- Error text of an invalid cron expression, NULL when valid.
CREATE OR REPLACE FUNCTION pgstream_lite.cron_error(p_expr text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM pgstream_lite.cron_parse(p_expr);
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN SQLERRM;
END;
$$;

-- The first firing strictly after p_after (UTC), NULL if none within ~10 years.
CREATE OR REPLACE FUNCTION pgstream_lite.cron_next(p_expr text, p_after timestamptz)
RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    c record;
    t timestamp;
    limit_t timestamp;
    day_ok boolean;
BEGIN
    c := pgstream_lite.cron_parse(p_expr);
    t := date_trunc('second', p_after AT TIME ZONE 'UTC') + interval '1 second';
    IF NOT c.has_seconds THEN
        t := date_trunc('minute', t + interval '59 seconds');
    END IF;
    limit_t := t + interval '10 years';
    WHILE t < limit_t LOOP
        IF NOT (extract(month FROM t)::integer = ANY (c.months)) THEN
            t := date_trunc('month', t) + interval '1 month';
            CONTINUE;
        END IF;
        IF c.dom_any AND c.dow_any THEN
            day_ok := true;
        ELSIF c.dom_any THEN
            day_ok := extract(dow FROM t)::integer = ANY (c.dows);
        ELSIF c.dow_any THEN
            day_ok := extract(day FROM t)::integer = ANY (c.doms);
        ELSE
            day_ok := extract(day FROM t)::integer = ANY (c.doms)
                      OR extract(dow FROM t)::integer = ANY (c.dows);
        END IF;
        IF NOT day_ok THEN
            t := date_trunc('day', t) + interval '1 day';
            CONTINUE;
        END IF;
        IF NOT (extract(hour FROM t)::integer = ANY (c.hours)) THEN
            t := date_trunc('hour', t) + interval '1 hour';
            CONTINUE;
        END IF;
        IF NOT (extract(minute FROM t)::integer = ANY (c.mins)) THEN
            t := date_trunc('minute', t) + interval '1 minute';
            CONTINUE;
        END IF;
        IF NOT (floor(extract(second FROM t))::integer = ANY (c.secs)) THEN
            t := t + interval '1 second';
            CONTINUE;
        END IF;
        RETURN t AT TIME ZONE 'UTC';
    END LOOP;
    RETURN NULL;
END;
$$;

-- Validate and normalise a schedule for create/alter: trimmed text, NULL = CALCULATED.
CREATE OR REPLACE FUNCTION pgstream_lite.normalize_schedule(p_schedule text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    s text;
    d record;
    err text;
    min_s integer;
BEGIN
    IF p_schedule IS NULL THEN
        RETURN NULL;
    END IF;
    s := btrim(p_schedule, E' \t\r\n\v\f');
    IF s = '' THEN
        RAISE EXCEPTION 'invalid argument: schedule cannot be empty';
    END IF;
    IF pgstream_lite.cron_is_cron(s) THEN
        err := pgstream_lite.cron_error(s);
        IF err IS NOT NULL THEN
            RAISE EXCEPTION 'invalid argument: invalid cron expression ''%'': %', s, err;
        END IF;
        RETURN s;
    END IF;
    d := pgstream_lite.duration_parse(s);
    IF d.error IS NOT NULL THEN
        RAISE EXCEPTION 'invalid argument: %', d.error;
    END IF;
    min_s := pgstream_lite.setting_int('pg_stream.min_schedule_seconds', 60);
    IF d.seconds < min_s THEN
        RAISE EXCEPTION 'invalid argument: schedule must be at least %s, got %s', min_s, d.seconds;
    END IF;
    RETURN s;
END;
$$;

CREATE OR REPLACE FUNCTION pgstream_lite.normalize_mode(p_mode text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    m text := upper(btrim(coalesce(p_mode, 'DIFFERENTIAL')));
BEGIN
    IF m = 'INCREMENTAL' THEN
        RETURN 'DIFFERENTIAL';
    ELSIF m IN ('FULL', 'DIFFERENTIAL') THEN
        RETURN m;
    END IF;
    RAISE EXCEPTION 'invalid argument: unknown refresh mode: %. Must be ''FULL'' or ''DIFFERENTIAL''',
        upper(p_mode);
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Row-id hashes: PostgreSQL's own stable 64-bit text hash (the one hash partitioning relies on).
CREATE OR REPLACE FUNCTION pgstream.pg_stream_hash(text)
RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT hashtextextended($1, 0)
$$;

-- The array's text form quotes elements unambiguously (NULL is distinct from 'NULL').
CREATE OR REPLACE FUNCTION pgstream.pg_stream_hash_multi(text[])
RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT hashtextextended($1::text, 1)
$$;
