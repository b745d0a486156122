/*
 * custos--0.2--0.3.sql: the SQL API of the HTTP gateway (gateway/).
 *
 * Every endpoint of custos-gateway calls exactly one function of this file
 * (or of an earlier script), in one transaction, after
 * custos.authenticate(<bearer token>).  The functions take and return JSON so
 * that the gateway stays thin: it checks the shape of a request, passes the
 * JSON through and relays the answer's bytes.  Everything about who may see
 * or do what stays in the database:
 *
 *	- readers (query_events, get_event, export_events) are SECURITY INVOKER,
 *	  so the row-level policies of 0.2, privacy mode and read auditing apply
 *	  to the caller exactly as to a direct SQL client;
 *	- writers call the 0.2 administration functions, which check the caller
 *	  themselves; append_events calls custos.log()/log_batch() as the invoker
 *	  (a SECURITY DEFINER wrapper would make every caller "trusted" there);
 *	- the few SECURITY DEFINER functions here (chain_verify, chain_digest,
 *	  describe_access, the idempotency helpers) check the caller first and pin
 *	  search_path.
 *
 * Events are paged by id (keyset; the order of appends), never by OFFSET.
 * The opaque cursor is base64url of "<a|d>:<last id>".
 */

\echo Use "ALTER EXTENSION custos UPDATE TO '0.3'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Filters
-- ---------------------------------------------------------------------------

CREATE TYPE custos.event_filter AS (
	tenant			text,
	from_time		timestamptz,
	to_time			timestamptz,
	action			text,
	category		text,
	resource_type	text,
	resource_id		text,
	actor			text,
	access			text,
	subject			text,
	target_level	text,
	outcome			text,
	no_clear		boolean,
	no_personal		boolean
);
COMMENT ON TYPE custos.event_filter IS
	'Event filters after validation (custos.parse_filters()); NULL fields do not filter.  no_clear: no filter on a clear column; no_personal: none on actor or subject.';

CREATE FUNCTION custos.parse_time(value text) RETURNS timestamptz
	LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
	-- epoch seconds, fractions allowed
	IF value ~ '^-?[0-9]{1,12}(\.[0-9]{1,6})?$' THEN
		RETURN pg_catalog.to_timestamp(value::pg_catalog.float8);
	END IF;
	-- RFC 3339 with a zone: independent of TimeZone and DateStyle, hence IMMUTABLE
	IF value ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$' THEN
		RETURN value::pg_catalog.timestamptz;
	END IF;
	RAISE EXCEPTION 'invalid time "%"', value
		USING ERRCODE = 'invalid_datetime_format',
			  HINT = 'Give an RFC 3339 time with a zone (2026-11-23T10:00:00Z) or epoch seconds.';
END
$$;
COMMENT ON FUNCTION custos.parse_time(text) IS
	'An RFC 3339 time with a zone, or epoch seconds, as timestamptz; anything else is an error (22007).';

CREATE FUNCTION custos.parse_filters(filters jsonb) RETURNS custos.event_filter
	LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	f custos.event_filter;
	k text;
	v jsonb;
	s text;
BEGIN
	f.no_clear := true;
	f.no_personal := true;
	IF filters IS NULL OR filters = 'null'::jsonb THEN
		RETURN f;
	END IF;
	IF pg_catalog.jsonb_typeof(filters) <> 'object' THEN
		RAISE EXCEPTION 'event filters must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k, v IN SELECT * FROM pg_catalog.jsonb_each(filters) LOOP
		IF pg_catalog.jsonb_typeof(v) = 'null' THEN
			CONTINUE;
		ELSIF pg_catalog.jsonb_typeof(v) = 'string' THEN
			s := v #>> '{}';
		ELSIF pg_catalog.jsonb_typeof(v) = 'number' AND k IN ('from', 'to', 'resource') THEN
			s := v::text;
		ELSE
			RAISE EXCEPTION 'filter "%" must be a string', k USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF pg_catalog.octet_length(s) > 1024 THEN
			RAISE EXCEPTION 'filter "%" is longer than 1024 bytes', k USING ERRCODE = 'string_data_right_truncation';
		END IF;
		CASE k
			WHEN 'tenant' THEN f.tenant := s;
			WHEN 'from' THEN f.from_time := custos.parse_time(s);
			WHEN 'to' THEN f.to_time := custos.parse_time(s);
			WHEN 'action' THEN f.action := s;
			WHEN 'category' THEN f.category := s;
			WHEN 'resource_type' THEN f.resource_type := s;
			WHEN 'resource' THEN f.resource_id := s;
			WHEN 'actor' THEN f.actor := s;
			WHEN 'access' THEN f.access := s;
			WHEN 'subject' THEN f.subject := s;
			WHEN 'target_level' THEN
				IF s NOT IN ('TENANT', 'GROUP', 'ENDPOINT') THEN
					RAISE EXCEPTION 'unknown target_level "%"', s USING ERRCODE = 'invalid_parameter_value',
						HINT = 'target_level is TENANT, GROUP or ENDPOINT.';
				END IF;
				f.target_level := s;
			WHEN 'outcome' THEN
				IF s NOT IN ('success', 'denied', 'failure') THEN
					RAISE EXCEPTION 'unknown outcome "%"', s USING ERRCODE = 'invalid_parameter_value',
						HINT = 'outcome is success, denied or failure.';
				END IF;
				f.outcome := s;
			ELSE
				RAISE EXCEPTION 'unknown event filter "%"', k USING ERRCODE = 'invalid_parameter_value',
					HINT = 'Filters: tenant, from, to, action, category, resource_type, resource, actor, access, subject, target_level, outcome.';
		END CASE;
		IF k IN ('actor', 'subject') THEN
			f.no_personal := false;
		ELSE
			f.no_clear := false;
		END IF;
	END LOOP;
	RETURN f;
END
$$;
COMMENT ON FUNCTION custos.parse_filters(jsonb) IS
	'Validates a JSON object of event filters (tenant, from, to, action, category, resource_type, resource, actor, access, subject, target_level, outcome); unknown keys are an error (22023).';

/*
 * The events that match the filters, as the caller may see them (RLS,
 * privacy mode and read auditing apply: SECURITY INVOKER over the
 * security_invoker view).  A single SELECT, STABLE, not STRICT: inlined into
 * the calling query, so that a caller's ORDER BY id ... LIMIT walks the
 * primary key and stops early, and an export streams.  "from" is inclusive,
 * "to" exclusive.
 *
 * Pass the filter as a constant, a parameter or a column of a one-row
 * subquery, never as an expression to compute: inlining substitutes the
 * argument at each of its references below, for every row.
 *
 * Each group of tests is OR-ed with its no_* flag.  Without that, a generic
 * plan multiplies the guessed selectivities of a dozen "(x IS NULL OR col =
 * x)" tests into an estimate of one row, and then sorts instead of walking
 * the index and joins as if for one row; a flag is a plain boolean, guessed
 * at one half.  With a constant filter the planner folds the tests away.
 *
 * actor and subject are personal fields: they are compared after
 * decryption, so those two filters decrypt every row the scan reaches, and
 * match nothing where the caller cannot decrypt (privacy mode).
 */
CREATE FUNCTION custos.matching_events(f custos.event_filter) RETURNS SETOF custos.events
	LANGUAGE sql STABLE AS $$
	SELECT e.*
	  FROM custos.events e
	 WHERE ((f).no_clear
			OR (((f).tenant IS NULL OR e.tenant OPERATOR(pg_catalog.=) (f).tenant)
				AND ((f).from_time IS NULL OR e.occurred_at OPERATOR(pg_catalog.>=) (f).from_time)
				AND ((f).to_time IS NULL OR e.occurred_at OPERATOR(pg_catalog.<) (f).to_time)
				AND ((f).action IS NULL OR e.action OPERATOR(pg_catalog.=) (f).action)
				AND ((f).category IS NULL OR e.category OPERATOR(pg_catalog.=) (f).category)
				AND ((f).resource_type IS NULL OR e.resource_type OPERATOR(pg_catalog.=) (f).resource_type)
				AND ((f).resource_id IS NULL OR e.resource_id OPERATOR(pg_catalog.=) (f).resource_id)
				AND ((f).access IS NULL OR e.access OPERATOR(pg_catalog.=) (f).access)
				AND ((f).target_level IS NULL OR e.target_level OPERATOR(pg_catalog.=) (f).target_level)
				AND ((f).outcome IS NULL OR e.outcome OPERATOR(pg_catalog.=) (f).outcome)))
	   AND ((f).no_personal
			OR (((f).actor IS NULL OR e.actor OPERATOR(pg_catalog.=) (f).actor)
				AND ((f).subject IS NULL OR e.subject OPERATOR(pg_catalog.=) (f).subject)))
$$;
COMMENT ON FUNCTION custos.matching_events(custos.event_filter) IS
	'Events visible to the caller that match a parsed filter (custos.parse_filters()); the one filter implementation behind query_events and the exports.';

-- ---------------------------------------------------------------------------
-- Reading (SECURITY INVOKER: row-level security applies)
-- ---------------------------------------------------------------------------

/*
 * One page of events, newest first by default.  Returns
 *   {"next_cursor": "<opaque>" | null, "events": [ {event}, ... ]}
 * as json (not jsonb), so that each event keeps the column order of
 * custos.events and the text is not rebuilt; "next_cursor" comes first so
 * that the gateway can read it without parsing the page.  Keyset paging on
 * id: a page sequence returns every event committed before it started exactly
 * once; events appended meanwhile appear only ahead of the cursor (desc: not
 * at all).
 */
CREATE FUNCTION custos.query_events(filters jsonb DEFAULT NULL, cursor text DEFAULT NULL,
									page_limit integer DEFAULT NULL, sort text DEFAULT NULL)
	RETURNS json
	LANGUAGE plpgsql STABLE AS $$
DECLARE
	lim integer := coalesce(page_limit, 100);
	dir text := sort;
	f custos.event_filter := custos.parse_filters(filters);
	after bigint;
	decoded text;
	page json;
	n bigint;
	last_id bigint;
BEGIN
	IF lim < 1 OR lim > 1000 THEN
		RAISE EXCEPTION 'limit must be between 1 and 1000, not %', lim USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF dir IS NOT NULL AND dir NOT IN ('asc', 'desc') THEN
		RAISE EXCEPTION 'order must be "asc" or "desc", not "%"', dir USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF cursor IS NOT NULL THEN
		IF cursor !~ '^[A-Za-z0-9_-]{4,40}$' OR pg_catalog.length(cursor) % 4 = 1 THEN
			RAISE EXCEPTION 'invalid cursor' USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Pass the next_cursor of the previous page unchanged.';
		END IF;
		-- 'escape' turns any byte into text, so that a forged cursor is just invalid
		decoded := pg_catalog.encode(pg_catalog.decode(
			pg_catalog.rpad(pg_catalog.translate(cursor, '-_', '+/'),
							(pg_catalog.length(cursor) + 3) / 4 * 4, '='), 'base64'), 'escape');
		IF decoded !~ '^[ad]:[0-9]{1,18}$' THEN
			RAISE EXCEPTION 'invalid cursor' USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Pass the next_cursor of the previous page unchanged.';
		END IF;
		-- (parenthesised: a bare CASE ... THEN would end the IF condition)
		IF dir IS NOT NULL AND dir <> (CASE pg_catalog.left(decoded, 1) WHEN 'a' THEN 'asc' ELSE 'desc' END) THEN
			RAISE EXCEPTION 'the cursor continues a listing in the other order'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		dir := CASE pg_catalog.left(decoded, 1) WHEN 'a' THEN 'asc' ELSE 'desc' END;
		after := pg_catalog.substr(decoded, 3)::bigint;
	END IF;
	dir := coalesce(dir, 'desc');

	-- lim + 1 rows: the extra one only says whether there is a next page
	IF dir = 'asc' THEN
		SELECT pg_catalog.json_agg(pg_catalog.row_to_json(p.ev) ORDER BY p.n) FILTER (WHERE p.n <= lim),
			   pg_catalog.count(*), pg_catalog.max((p.ev).id) FILTER (WHERE p.n <= lim)
		  INTO page, n, last_id
		  FROM (SELECT s.e AS ev, pg_catalog.row_number() OVER () AS n
				  FROM (SELECT e FROM custos.matching_events(f) e
						 WHERE after IS NULL OR e.id OPERATOR(pg_catalog.>) after
						 ORDER BY e.id LIMIT lim + 1) s) p;
	ELSE
		SELECT pg_catalog.json_agg(pg_catalog.row_to_json(p.ev) ORDER BY p.n) FILTER (WHERE p.n <= lim),
			   pg_catalog.count(*), pg_catalog.min((p.ev).id) FILTER (WHERE p.n <= lim)
		  INTO page, n, last_id
		  FROM (SELECT s.e AS ev, pg_catalog.row_number() OVER () AS n
				  FROM (SELECT e FROM custos.matching_events(f) e
						 WHERE after IS NULL OR e.id OPERATOR(pg_catalog.<) after
						 ORDER BY e.id DESC LIMIT lim + 1) s) p;
	END IF;

	RETURN pg_catalog.json_build_object(
		'next_cursor',
		CASE WHEN n > lim THEN
			pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(pg_catalog.convert_to(
				pg_catalog.left(dir, 1) || ':' || last_id, 'SQL_ASCII'), 'base64'), '+/', '-_'), '=')
		END,
		'events', coalesce(page, '[]'::json));
END
$$;
COMMENT ON FUNCTION custos.query_events(jsonb, text, integer, text) IS
	'A page of the events the caller may see: {"next_cursor", "events"}; keyset paging by id (order asc|desc, limit 1..1000, default 100 desc).';

CREATE FUNCTION custos.get_event(id bigint) RETURNS json
	LANGUAGE sql STABLE AS $$
	SELECT pg_catalog.row_to_json(e) FROM custos.events e WHERE e.id OPERATOR(pg_catalog.=) $1
$$;
COMMENT ON FUNCTION custos.get_event(bigint) IS
	'One event as json, or NULL if it does not exist or the caller may not see it.';

-- ---------------------------------------------------------------------------
-- Export (COPY ... TO STDOUT, one snapshot)
-- ---------------------------------------------------------------------------

/*
 * A cell as a spreadsheet will not run it: text starting with = + - @, a tab
 * or a carriage return gets a leading apostrophe (OWASP "CSV injection").
 * Quoting (RFC 4180) is COPY's: FORMAT csv quotes cells with commas, quotes
 * and line breaks.
 */
-- Not STRICT: a strict SQL function whose body is not strict is not inlined,
-- and this one runs for every cell of an export.
CREATE FUNCTION custos.csv_cell(value text) RETURNS text
	LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT CASE WHEN pg_catalog.left(value, 1) IN ('=', '+', '-', '@', E'\t', E'\r')
				THEN '''' OPERATOR(pg_catalog.||) value ELSE value END
$$;
COMMENT ON FUNCTION custos.csv_cell(text) IS
	'Neutralises spreadsheet formulas: a leading apostrophe before = + - @ tab or CR.';

/*
 * Rows for a CSV export, in id order, every text cell formula-neutralised.
 * Inlined into the query that calls it, so that they stream: give it a
 * parsed filter as a constant or as a column of a one-row subquery (see
 * custos.matching_events()); custos.export_events() does that for a JSON
 * filter.
 */
CREATE TYPE custos.csv_event AS (
	id bigint, tenant text, occurred_at text, recorded_at text,
	actor text, actor_type text, actor_name text, source_ip text, user_agent text,
	category text, action text, resource_type text, resource_id text,
	resource_name text, target_level text, target_name text, subject text,
	description text, outcome text, previous_state text, new_state text,
	metadata text, request_id text, access text, seq bigint, block_no bigint,
	sealed boolean, personal_data text);
COMMENT ON TYPE custos.csv_event IS
	'A row of a CSV export: the columns of custos.events as text, times in RFC 3339 UTC, formulas neutralised.';

CREATE FUNCTION custos.export_rows(f custos.event_filter) RETURNS SETOF custos.csv_event
	LANGUAGE sql STABLE AS $$
	SELECT e.id, custos.csv_cell(e.tenant),
		   pg_catalog.to_char(pg_catalog.timezone('UTC', e.occurred_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
		   pg_catalog.to_char(pg_catalog.timezone('UTC', e.recorded_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
		   custos.csv_cell(e.actor), custos.csv_cell(e.actor_type), custos.csv_cell(e.actor_name),
		   e.source_ip::text, custos.csv_cell(e.user_agent),
		   custos.csv_cell(e.category), custos.csv_cell(e.action), custos.csv_cell(e.resource_type),
		   custos.csv_cell(e.resource_id), custos.csv_cell(e.resource_name),
		   custos.csv_cell(e.target_level), custos.csv_cell(e.target_name), custos.csv_cell(e.subject),
		   custos.csv_cell(e.description), custos.csv_cell(e.outcome),
		   custos.csv_cell(e.previous_state::text), custos.csv_cell(e.new_state::text),
		   custos.csv_cell(e.metadata::text), custos.csv_cell(e.request_id), custos.csv_cell(e.access),
		   e.seq, e.block_no, e.sealed, e.personal_data
	  FROM custos.matching_events(f) e
	 ORDER BY e.id
$$;
COMMENT ON FUNCTION custos.export_rows(custos.event_filter) IS
	'Events for a CSV export, in id order, every text cell formula-neutralised (custos.csv_cell()).';

/*
 * Events for a CSV export with COPY, for a constant JSON filter:
 *   COPY (SELECT * FROM custos.export_events('{"action": "LOGIN"}'))
 *     TO STDOUT WITH (FORMAT csv, HEADER);
 * custos.parse_filters() is IMMUTABLE, so the constant filter is parsed once,
 * at planning.
 */
CREATE FUNCTION custos.export_events(filters jsonb DEFAULT NULL) RETURNS SETOF custos.csv_event
	LANGUAGE sql STABLE AS $$
	SELECT * FROM custos.export_rows(custos.parse_filters(filters))
$$;
COMMENT ON FUNCTION custos.export_events(jsonb) IS
	'Events for a CSV export with COPY, for a constant JSON filter (see custos.parse_filters()).';

/*
 * Rows for NDJSON: one json object per row, in id order.  The gateway copies
 * them with FORMAT csv, DELIMITER E'\x01', QUOTE E'\x02': json text never
 * holds a raw control character (they are escaped), so COPY writes each
 * object verbatim, one per line.
 */
CREATE FUNCTION custos.export_rows_json(f custos.event_filter) RETURNS SETOF json
	LANGUAGE sql STABLE AS $$
	SELECT pg_catalog.row_to_json(e) FROM custos.matching_events(f) e ORDER BY e.id
$$;
COMMENT ON FUNCTION custos.export_rows_json(custos.event_filter) IS
	'Events for an NDJSON export with COPY, in id order, one json object per row.';

CREATE FUNCTION custos.export_events_json(filters jsonb DEFAULT NULL) RETURNS SETOF json
	LANGUAGE sql STABLE AS $$
	SELECT * FROM custos.export_rows_json(custos.parse_filters(filters))
$$;
COMMENT ON FUNCTION custos.export_events_json(jsonb) IS
	'Events for an NDJSON export with COPY, for a constant JSON filter.';

/*
 * COPY cannot take parameters.  The gateway's export transaction therefore
 * validates the filters here first (so that a bad filter is an error before
 * any row is sent) and keeps them, for this transaction only, in the setting
 * custos_export.filters, which its constant COPY statement reads.  The setting
 * is a filter, never an identity: the caller is the authenticated principal.
 */
CREATE FUNCTION custos.export_prepare(filters jsonb) RETURNS void
	LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM custos.parse_filters(filters);
	PERFORM pg_catalog.set_config('custos_export.filters', coalesce(filters, '{}'::jsonb)::text, true);
END
$$;
COMMENT ON FUNCTION custos.export_prepare(jsonb) IS
	'Validates export filters and keeps them for the rest of the transaction in custos_export.filters (the gateway''s COPY reads them).';

-- ---------------------------------------------------------------------------
-- Appending, with idempotency keys
-- ---------------------------------------------------------------------------

CREATE TABLE custos.idempotency_key (
	access			text		NOT NULL,
	key				text		NOT NULL,
	request_hash	bytea		NOT NULL,
	ids				bigint[],
	created_at		timestamptz	NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	CONSTRAINT idempotency_key_pkey PRIMARY KEY (access, key)
);
COMMENT ON TABLE custos.idempotency_key IS
	'Idempotency-Key of appends (HTTP POST /v1/events): a retried append with the same key and body returns the first ids.  Kept 24 hours.';
COMMENT ON COLUMN custos.idempotency_key.access IS 'The caller (custos.current_access()): keys are per token or principal.';
COMMENT ON COLUMN custos.idempotency_key.request_hash IS 'SHA-256 of the appended jsonb''s text: the same key with another body is refused.';
COMMENT ON COLUMN custos.idempotency_key.ids IS 'The ids the first append returned; NULL until it has appended.';
CREATE INDEX idempotency_key_created ON custos.idempotency_key (created_at);
COMMENT ON INDEX custos.idempotency_key_created IS 'The purge of expired keys in custos.idempotency_claim().';
REVOKE ALL ON custos.idempotency_key FROM PUBLIC;

/*
 * Claims (access, key) for this transaction, or returns the ids of an earlier
 * append under the key.  A concurrent request with the same key waits on the
 * primary key until the first one ends: after its commit it gets the ids,
 * after its abort it appends itself.
 */
CREATE FUNCTION custos.idempotency_claim(key text, request_hash bytea) RETURNS bigint[]
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	acc text := custos.current_access();
	r custos.idempotency_key;
BEGIN
	IF acc IS NULL THEN
		RAISE EXCEPTION 'an idempotency key needs an authenticated principal' USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF $1 !~ '^[\x21-\x7e]{1,255}$' THEN
		RAISE EXCEPTION 'invalid idempotency key' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use 1 to 255 printable ASCII characters, e.g. a UUID.';
	END IF;
	-- expired keys: this one, and a few others each time
	DELETE FROM custos.idempotency_key i WHERE i.access = acc AND i.key = $1
		AND i.created_at < pg_catalog.now() - interval '24 hours';
	DELETE FROM custos.idempotency_key i WHERE i.ctid = ANY (ARRAY(
		SELECT o.ctid FROM custos.idempotency_key o WHERE o.created_at < pg_catalog.now() - interval '24 hours'
		 LIMIT 16 FOR UPDATE SKIP LOCKED));
	INSERT INTO custos.idempotency_key (access, key, request_hash) VALUES (acc, $1, $2)
		ON CONFLICT ON CONSTRAINT idempotency_key_pkey DO NOTHING;
	IF FOUND THEN
		RETURN NULL;
	END IF;
	SELECT * INTO r FROM custos.idempotency_key i WHERE i.access = acc AND i.key = $1;
	IF r.request_hash IS DISTINCT FROM $2 THEN
		RAISE EXCEPTION 'idempotency key "%" was used with another request', $1
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'A key identifies one append; retry with the same body, or use a new key.';
	END IF;
	RETURN r.ids;
END
$$;
COMMENT ON FUNCTION custos.idempotency_claim(text, bytea) IS
	'Internal (custos.append_events()): claims an idempotency key, or returns the ids already appended under it.';

CREATE FUNCTION custos.idempotency_record(key text, ids bigint[]) RETURNS void
	LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	UPDATE custos.idempotency_key i SET ids = $2
	 WHERE i.access = custos.current_access() AND i.key = $1 AND i.ids IS NULL
$$;
COMMENT ON FUNCTION custos.idempotency_record(text, bigint[]) IS
	'Internal (custos.append_events()): stores the ids of the append that claimed the key.';

/*
 * Appends one event (a JSON object) or a batch (an array, atomic), returning
 * {"ids": [...], "replayed": false}; with an idempotency key that was used
 * before with the same body, appends nothing and returns the first ids with
 * "replayed": true.  SECURITY INVOKER: custos.log() judges the caller.
 */
CREATE FUNCTION custos.append_events(events jsonb, idempotency_key text DEFAULT NULL) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	h bytea;
	ids bigint[];
BEGIN
	IF events IS NULL THEN
		RAISE EXCEPTION 'events must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF pg_catalog.jsonb_typeof(events) NOT IN ('object', 'array') THEN
		RAISE EXCEPTION 'expected an event object or an array of events' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF pg_catalog.jsonb_typeof(events) = 'array' AND pg_catalog.jsonb_array_length(events) = 0 THEN
		RAISE EXCEPTION 'the batch of events is empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF idempotency_key IS NOT NULL THEN
		h := pg_catalog.sha256(pg_catalog.convert_to(events::text, 'UTF8'));
		ids := custos.idempotency_claim(idempotency_key, h);
		IF ids IS NOT NULL THEN
			RETURN pg_catalog.jsonb_build_object('ids', pg_catalog.to_jsonb(ids), 'replayed', true);
		END IF;
	END IF;
	IF pg_catalog.jsonb_typeof(events) = 'object' THEN
		ids := ARRAY[custos.log(events)];
	ELSE
		SELECT pg_catalog.array_agg(b.id ORDER BY b.n) INTO ids
		  FROM custos.log_batch(events) WITH ORDINALITY AS b(id, n);
	END IF;
	IF idempotency_key IS NOT NULL THEN
		PERFORM custos.idempotency_record(idempotency_key, ids);
	END IF;
	RETURN pg_catalog.jsonb_build_object('ids', pg_catalog.to_jsonb(ids), 'replayed', false);
END
$$;
COMMENT ON FUNCTION custos.append_events(jsonb, text) IS
	'Appends an event object or an array of events (atomic); {"ids", "replayed"}.  An idempotency key makes a retry return the first ids instead of appending again.';

-- ---------------------------------------------------------------------------
-- The chain, for a tenant the caller may audit
-- ---------------------------------------------------------------------------

/*
 * Raises 42501 unless the caller may audit the tenant's whole chain: a
 * principal acting with all its rights (not an app or shared token, which
 * see only their own events) that can read the tenant's log, or a superuser
 * without a principal.  Returns the tenant, the caller's own by default.
 */
CREATE FUNCTION custos.require_audit(tenant text) RETURNS text
	LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me text := custos.current_principal();
	t text := $1;
BEGIN
	IF me IS NULL THEN
		IF custos.caller_is_superuser() AND t IS NOT NULL THEN
			RETURN t;
		END IF;
		RAISE EXCEPTION 'auditing a chain needs an authenticated principal' USING ERRCODE = 'insufficient_privilege',
			HINT = 'Call custos.authenticate(token) first in this transaction.';
	END IF;
	IF t IS NULL THEN
		SELECT p.tenant INTO t FROM custos.principal p WHERE p.id = me;
	END IF;
	IF NOT custos.sees_all_actions() OR NOT (t = ANY (custos.visible_tenants())) THEN
		RAISE EXCEPTION 'principal "%" may not audit tenant "%"', me, t USING ERRCODE = 'insufficient_privilege',
			DETAIL = 'Auditing the chain needs read access to the whole audit log of the tenant; app and shared tokens see only their own events.';
	END IF;
	RETURN t;
END
$$;
COMMENT ON FUNCTION custos.require_audit(text) IS
	'Authorisation check of chain_verify and chain_digest; returns the tenant (the caller''s own by default).';

CREATE FUNCTION custos.chain_verify(tenant text DEFAULT NULL, digest jsonb DEFAULT NULL) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t text := custos.require_audit(coalesce($1, $2 ->> 'tenant'));
	res jsonb;
BEGIN
	SELECT pg_catalog.to_jsonb(v) INTO res FROM custos.verify(t, $2) v;
	RETURN res;
END
$$;
COMMENT ON FUNCTION custos.chain_verify(text, jsonb) IS
	'custos.verify() of one tenant the caller may audit (default: its own), optionally against a kept digest, as jsonb.';

CREATE FUNCTION custos.chain_digest(tenant text DEFAULT NULL) RETURNS jsonb
	LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT custos.digest(custos.require_audit($1))
$$;
COMMENT ON FUNCTION custos.chain_digest(text) IS
	'custos.digest() of one tenant the caller may audit (default: its own).';

-- ---------------------------------------------------------------------------
-- Administration, JSON in and out (the 0.2 functions check the caller)
-- ---------------------------------------------------------------------------

-- Raises 22023 unless obj is a JSON object whose keys are all in allowed.
CREATE FUNCTION custos.check_keys(obj jsonb, what text, allowed text[]) RETURNS void
	LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	k text;
BEGIN
	IF obj IS NULL OR pg_catalog.jsonb_typeof(obj) <> 'object' THEN
		RAISE EXCEPTION '% must be a JSON object', what USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k IN SELECT pg_catalog.jsonb_object_keys(obj) LOOP
		IF NOT (k = ANY (allowed)) THEN
			RAISE EXCEPTION 'unknown field "%" in %', k, what USING ERRCODE = 'invalid_parameter_value',
				HINT = pg_catalog.format('Fields: %s.', pg_catalog.array_to_string(allowed, ', '));
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION custos.check_keys(jsonb, text, text[]) IS 'Internal: rejects unknown fields of a JSON request body.';

-- The string field "key" of obj: NULL if absent or null, 22023 if another type.
CREATE FUNCTION custos.json_text(obj jsonb, key text) RETURNS text
	LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF obj -> key IS NULL OR pg_catalog.jsonb_typeof(obj -> key) = 'null' THEN
		RETURN NULL;
	END IF;
	IF pg_catalog.jsonb_typeof(obj -> key) <> 'string' THEN
		RAISE EXCEPTION 'field "%" must be a string', key USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN obj ->> key;
END
$$;
COMMENT ON FUNCTION custos.json_text(jsonb, text) IS 'Internal: a string field of a JSON request body.';

CREATE FUNCTION custos.put_privacy_mode(tenant text, settings jsonb) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM custos.check_keys(settings, 'privacy mode settings', ARRAY['enabled']);
	IF pg_catalog.jsonb_typeof(settings -> 'enabled') IS DISTINCT FROM 'boolean' THEN
		RAISE EXCEPTION 'field "enabled" must be true or false' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM custos.set_privacy_mode($1, (settings ->> 'enabled')::boolean);
	RETURN pg_catalog.jsonb_build_object('tenant', $1, 'privacy_mode', (settings ->> 'enabled')::boolean);
END
$$;
COMMENT ON FUNCTION custos.put_privacy_mode(text, jsonb) IS
	'custos.set_privacy_mode() with {"enabled": true|false}; only the tenant''s own owner (or privacy.manage) may.';

CREATE FUNCTION custos.create_grant(grant_request jsonb) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	new_id bigint;
	expires timestamptz;
BEGIN
	PERFORM custos.check_keys(grant_request, 'grant', ARRAY['tenant', 'principal', 'right', 'expires_at']);
	IF custos.json_text(grant_request, 'tenant') IS NULL OR custos.json_text(grant_request, 'principal') IS NULL
		OR custos.json_text(grant_request, 'right') IS NULL THEN
		RAISE EXCEPTION 'a grant needs "tenant", "principal" and "right"' USING ERRCODE = 'not_null_violation';
	END IF;
	IF grant_request ? 'expires_at' AND pg_catalog.jsonb_typeof(grant_request -> 'expires_at') <> 'null' THEN
		expires := custos.parse_time(CASE pg_catalog.jsonb_typeof(grant_request -> 'expires_at')
										 WHEN 'number' THEN (grant_request -> 'expires_at')::text
										 ELSE custos.json_text(grant_request, 'expires_at') END);
	END IF;
	new_id := custos.grant_right(custos.json_text(grant_request, 'tenant'),
								 custos.json_text(grant_request, 'principal'),
								 custos.json_text(grant_request, 'right'), expires);
	RETURN pg_catalog.jsonb_build_object('id', new_id, 'tenant', grant_request -> 'tenant',
										 'principal', grant_request -> 'principal',
										 'right', grant_request -> 'right', 'expires_at', expires);
END
$$;
COMMENT ON FUNCTION custos.create_grant(jsonb) IS
	'custos.grant_right() with {"tenant", "principal", "right", "expires_at"}; returns the grant with its id.';

CREATE FUNCTION custos.delete_grant(grant_id bigint) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM custos.revoke_right($1);
	RETURN pg_catalog.jsonb_build_object('id', $1, 'revoked', true);
END
$$;
COMMENT ON FUNCTION custos.delete_grant(bigint) IS 'custos.revoke_right(), as jsonb.';

CREATE FUNCTION custos.create_token(token_request jsonb) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	r record;
	valid interval := interval '90 days';
	who text;
BEGIN
	PERFORM custos.check_keys(token_request, 'token request', ARRAY['principal', 'kind', 'valid_for', 'label']);
	who := coalesce(custos.json_text(token_request, 'principal'), custos.current_principal());
	IF who IS NULL THEN
		RAISE EXCEPTION 'a token request needs "principal"' USING ERRCODE = 'not_null_violation';
	END IF;
	IF pg_catalog.jsonb_typeof(token_request -> 'valid_for') = 'number' THEN
		valid := pg_catalog.make_interval(secs => (token_request ->> 'valid_for')::float8);
	ELSIF custos.json_text(token_request, 'valid_for') IS NOT NULL THEN
		valid := custos.json_text(token_request, 'valid_for')::interval;
	END IF;
	SELECT * INTO r FROM custos.issue_token(who, coalesce(custos.json_text(token_request, 'kind'), 'personal'),
											valid, custos.json_text(token_request, 'label'));
	RETURN pg_catalog.jsonb_build_object('token_id', r.token_id, 'token', r.token, 'expires_at', r.expires_at,
										 'principal', who,
										 'kind', coalesce(custos.json_text(token_request, 'kind'), 'personal'));
END
$$;
COMMENT ON FUNCTION custos.create_token(jsonb) IS
	'custos.issue_token() with {"principal" (default: the caller), "kind", "valid_for" (interval text or seconds), "label"}; the secret is in the answer only.';

CREATE FUNCTION custos.delete_token(token_id text) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM custos.revoke_token($1);
	RETURN pg_catalog.jsonb_build_object('token_id', $1, 'revoked', true);
END
$$;
COMMENT ON FUNCTION custos.delete_token(text) IS 'custos.revoke_token(), as jsonb.';

/*
 * Who am I: custos.access_info() and the caller's live rights: explicit
 * grants, and for owners and admins the implicit audit.read and audit.export
 * on their tenant.  SECURITY DEFINER to read the caller's own grants.
 */
CREATE FUNCTION custos.describe_access() RETURNS jsonb
	LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me custos.principal;
	rights jsonb := '[]';
BEGIN
	SELECT * INTO me FROM custos.principal p WHERE p.id = custos.current_principal();
	IF me.id IS NOT NULL THEN
		SELECT coalesce(jsonb_agg(r ORDER BY r ->> 'tenant', r ->> 'right'), '[]') INTO rights FROM (
			SELECT jsonb_build_object('id', g.id, 'tenant', g.tenant, 'right', g.right_name,
									  'expires_at', g.expires_at, 'implicit', false) AS r
			  FROM custos.right_grant g
			 WHERE g.principal = me.id AND g.revoked_at IS NULL
			   AND (g.expires_at IS NULL OR g.expires_at > now())
			UNION ALL
			SELECT jsonb_build_object('id', NULL, 'tenant', me.tenant, 'right', x.right_name,
									  'expires_at', NULL, 'implicit', true)
			  FROM unnest(ARRAY['audit.read', 'audit.export']) AS x(right_name)
			 WHERE me.role IN ('owner', 'admin')) s;
	END IF;
	RETURN custos.access_info() || jsonb_build_object('rights', rights);
END
$$;
COMMENT ON FUNCTION custos.describe_access() IS
	'custos.access_info() and the caller''s live rights (HTTP GET /v1/access-info).';

-- ---------------------------------------------------------------------------
-- Privileges: the policies and the 0.2 functions decide; the internal
-- helpers are not callable directly.
-- ---------------------------------------------------------------------------

-- The idempotency helpers run inside append_events, which runs as the caller,
-- so the caller needs EXECUTE; called directly they reach only the caller's
-- own keys (rows are keyed by custos.current_access()).
REVOKE ALL ON FUNCTION custos.require_audit(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos.parse_time(text), custos.parse_filters(jsonb),
	custos.matching_events(custos.event_filter), custos.export_rows(custos.event_filter),
	custos.export_rows_json(custos.event_filter),
	custos.query_events(jsonb, text, integer, text), custos.get_event(bigint), custos.csv_cell(text),
	custos.export_events(jsonb), custos.export_events_json(jsonb), custos.export_prepare(jsonb),
	custos.append_events(jsonb, text), custos.idempotency_claim(text, bytea),
	custos.idempotency_record(text, bigint[]), custos.chain_verify(text, jsonb), custos.chain_digest(text),
	custos.check_keys(jsonb, text, text[]), custos.json_text(jsonb, text),
	custos.put_privacy_mode(text, jsonb), custos.create_grant(jsonb), custos.delete_grant(bigint),
	custos.create_token(jsonb), custos.delete_token(text), custos.describe_access()
	TO PUBLIC;
