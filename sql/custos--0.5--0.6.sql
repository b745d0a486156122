/*
 * custos--0.5--0.6.sql: reports: subject access and support reports, the viewer's SQL (issue 7)
 *
 * Two reports, each one call, each an audit event of its own:
 *
 *	- custos.subject_report(tenant, subject): GDPR Art. 15.  Every event still
 *	  held by or about a data subject in one tenant, with its fields, as jsonb;
 *	  custos.subject_report_csv() gives the same rows for COPY ... CSV.  Only
 *	  an owner or admin holding audit.export on the tenant, whose personal
 *	  data it may see, may produce one.  Following the CJEU (C-579/21, Pankki
 *	  S), accesses to the subject's data are listed with dates and purposes
 *	  but, unless asked for with a reason, without who accessed them.
 *
 *	- custos.support_report(): what a vendor's support needs (versions,
 *	  allow-listed settings, chains, jobs, counts, recent problems) and by
 *	  default no personal data and never a secret.  With personal data, only
 *	  the tenant's own owner, with a reason.
 *
 * Finding a subject's events never decrypts the log: the subject's data keys
 * are found by their scope reference (custos.scope_ref() of 0.5, as erasure
 * finds them), and the events by the key ids they carry.  So erased and anonymised events are found too, and reported
 * with that state instead of values.
 *
 * Report events use built-in taxonomy names only (category privacy or
 * system, action EXPORT, resource_type REPORT, resource_id "subject-access"
 * or "support"), so they are valid in the strict taxonomy mode of 0.4.  The
 * subject of a subject report is the event's subject: a personal field,
 * encrypted under the subject's own key, erased with the subject.
 */

\echo Use "ALTER EXTENSION custos UPDATE TO '0.6'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Subject access report (GDPR Art. 15)
-- ---------------------------------------------------------------------------

/*
 * Raises 42501 unless the caller may produce a subject access report of the
 * tenant; returns the caller's principal.  The rule:
 *
 *	- an authenticated principal (a token, or a mapped role), not a
 *	  superuser without one: the report is personal data of someone else and
 *	  someone accountable must have asked for it;
 *	- acting with all its rights (personal token): app and shared tokens see
 *	  only their own events, so their report would be incomplete;
 *	- of role owner or admin, holding audit.export on the tenant: implicitly,
 *	  as owner/admin of the tenant or of a tenant above it, or by a live grant
 *	  on the tenant or a tenant above it (docs/privacy.md);
 *	- able to see the tenant's personal data: a tenant in privacy mode (or
 *	  below one) hides it from principals of tenants above, unless its owner
 *	  granted them data.read.  Its own owner or admin produces the report.
 */
CREATE FUNCTION custos.require_subject_report(tenant text) RETURNS text
	LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me custos.principal;
	path text[] := custos.tenant_path($1);
BEGIN
	IF path IS NULL THEN
		RAISE EXCEPTION 'tenant "%" does not exist', $1 USING ERRCODE = 'no_data_found';
	END IF;
	SELECT * INTO me FROM custos.principal p WHERE p.id = custos.current_principal();
	IF me.id IS NULL THEN
		RAISE EXCEPTION 'a subject access report needs an authenticated principal'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The report discloses a person''s data; it is produced by an owner or admin who is accountable for it, never anonymously (superusers included).',
				  HINT = 'Call custos.authenticate(token) first in this transaction.';
	END IF;
	IF NOT custos.sees_all_actions() THEN
		RAISE EXCEPTION 'principal "%" may not produce subject access reports with this token', me.id
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'App and shared tokens see only the events they appended, so their report would be incomplete.',
				  HINT = 'Use a personal token.';
	END IF;
	IF me.role NOT IN ('owner', 'admin') THEN
		RAISE EXCEPTION 'principal "%" may not produce subject access reports of tenant "%"', me.id, $1
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Subject access reports are produced by an owner or admin holding audit.export on the tenant; this principal is a member.';
	END IF;
	IF NOT (me.tenant = ANY (path)
			OR EXISTS (SELECT 1 FROM custos.right_grant g
						WHERE g.principal = me.id AND g.tenant = ANY (path)
						  AND g.right_name = 'audit.export' AND g.revoked_at IS NULL
						  AND (g.expires_at IS NULL OR g.expires_at > pg_catalog.now()))) THEN
		RAISE EXCEPTION 'principal "%" may not produce subject access reports of tenant "%"', me.id, $1
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'It holds audit.export neither implicitly (as owner or admin of the tenant or a tenant above it) nor by a live grant.';
	END IF;
	IF NOT ($1 = ANY (custos.personal_tenants())) THEN
		RAISE EXCEPTION 'principal "%" may not see the personal data of tenant "%"', me.id, $1
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The tenant is in privacy mode, or below a tenant in privacy mode: its personal data is hidden from principals of tenants above it.',
				  HINT = 'Ask the tenant''s own owner or admin for the report, or its owner for a data.read grant.';
	END IF;
	RETURN me.id;
END
$$;
COMMENT ON FUNCTION custos.require_subject_report(text) IS
	'Authorisation check of the subject access report: an owner or admin with audit.export on the tenant who may see its personal data; returns the principal.';

/*
 * Starts a subject access report: checks the caller and the arguments and
 * records the report as an audit event of the tenant (category privacy,
 * action EXPORT, resource_type REPORT, resource_id "subject-access"; the
 * subject in the event's encrypted subject field; whether accessors are
 * included and why in new_state).  Returns the event's id, which the report's
 * rows are then read by (custos.subject_report_rows(), _csv()): no report
 * without its event.
 */
CREATE FUNCTION custos.subject_report_start(tenant text, subject text, include_accessors boolean DEFAULT false,
											reason text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	why text := pg_catalog.btrim($4);
BEGIN
	IF $1 IS NULL OR $2 IS NULL OR $2 = '' THEN
		RAISE EXCEPTION 'a subject access report needs a tenant and a subject' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF pg_catalog.octet_length($2) > 1024 THEN
		RAISE EXCEPTION 'subject is longer than 1024 bytes' USING ERRCODE = 'string_data_right_truncation';
	END IF;
	PERFORM custos.require_subject_report($1);
	IF coalesce($3, false) AND (why IS NULL OR why = '') THEN
		RAISE EXCEPTION 'naming the accessors needs a reason' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'By default the report gives the dates and purposes of accesses, not who accessed (CJEU C-579/21).',
			HINT = 'Say why the data subject needs the accessors'' identities, e.g. to check the lawfulness of a processing.';
	END IF;
	IF pg_catalog.octet_length(why) > 1024 THEN
		RAISE EXCEPTION 'reason is longer than 1024 bytes' USING ERRCODE = 'string_data_right_truncation';
	END IF;
	RETURN custos.log(pg_catalog.jsonb_build_object(
		'tenant', $1, 'category', 'privacy', 'action', 'EXPORT', 'resource_type', 'REPORT',
		'resource_id', 'subject-access', 'resource_name', 'GDPR Art. 15 subject access report',
		'subject', $2,
		'new_state', pg_catalog.jsonb_build_object('include_accessors', coalesce($3, false), 'reason', why),
		'metadata', pg_catalog.jsonb_build_object('purpose', 'GDPR Art. 15 subject access request')));
END
$$;
COMMENT ON FUNCTION custos.subject_report_start(text, text, boolean, text) IS
	'Checks the caller and records a subject access report as an audit event; returns its id, by which the rows are read.';

/*
 * What a started report covers: its tenant, subject, options, and the ids of
 * the subject's data keys (actor keys: events by the subject; subject keys:
 * events about it), shredded ones included.  Only for the principal and
 * token (custos.current_access()) that started it, within an hour, and only
 * while the caller still passes custos.require_subject_report().
 */
CREATE FUNCTION custos.subject_report_scope(report_id bigint, OUT tenant text, OUT subject text,
											OUT include_accessors boolean, OUT actor_keys bigint[],
											OUT subject_keys bigint[])
	LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	ev record;
BEGIN
	SELECT e.tenant, e.subject, e.new_state, e.access, e.recorded_at INTO ev
	  FROM custos.events e
	 WHERE e.id = $1 AND e.action = 'EXPORT' AND e.resource_type = 'REPORT' AND e.resource_id = 'subject-access';
	IF ev.tenant IS NULL OR ev.access IS DISTINCT FROM custos.current_access()
	   OR ev.recorded_at < pg_catalog.now() - interval '1 hour' THEN
		RAISE EXCEPTION 'no subject access report % of this caller in the last hour', $1
			USING ERRCODE = 'no_data_found',
				  HINT = 'Start a report with custos.subject_report_start(tenant, subject) and read it with the same token.';
	END IF;
	PERFORM custos.require_subject_report(ev.tenant);
	IF ev.subject IS NULL THEN
		RAISE EXCEPTION 'the subject of report % has been erased', $1 USING ERRCODE = 'no_data_found';
	END IF;
	tenant := ev.tenant;
	subject := ev.subject;
	include_accessors := coalesce((ev.new_state ->> 'include_accessors')::boolean, false);
	-- the subject's keys as erase_subject() (0.5) finds them
	SELECT coalesce(pg_catalog.array_agg(k.key_id ORDER BY k.key_id) FILTER (WHERE k.scope = 'actor'), '{}'),
		   coalesce(pg_catalog.array_agg(k.key_id ORDER BY k.key_id) FILTER (WHERE k.scope = 'subject'), '{}')
	  INTO actor_keys, subject_keys
	  FROM custos.data_key k
	 WHERE k.tenant = ev.tenant
	   AND ((k.scope = 'actor' AND k.scope_ref = custos.scope_ref(ev.tenant, 'actor', ev.subject))
			OR (k.scope = 'subject' AND k.scope_ref = custos.scope_ref(ev.tenant, 'subject', ev.subject)));
END
$$;
COMMENT ON FUNCTION custos.subject_report_scope(bigint) IS
	'Internal: tenant, subject, options and data-key ids of a subject access report the caller started.';

CREATE TYPE custos.subject_event AS (
	id				bigint,
	tenant			text,
	occurred_at		timestamptz,
	recorded_at		timestamptz,
	by_subject		boolean,
	about_subject	boolean,
	is_access		boolean,
	category		text,
	action			text,
	resource_type	text,
	resource_id		text,
	resource_name	text,
	target_level	text,
	target_name		text,
	outcome			text,
	purpose			text,
	personal_data	text,
	actor			text,
	actor_type		text,
	actor_name		text,
	source_ip		inet,
	user_agent		text,
	subject			text,
	description		text,
	previous_state	jsonb,
	new_state		jsonb,
	metadata		jsonb,
	request_id		text,
	access			text,
	sealed			boolean,
	seq				bigint,
	withheld		text[]
);
COMMENT ON TYPE custos.subject_event IS
	'An event of a subject access report: the event''s fields, how it relates to the subject, and which fields are withheld.';

/*
 * The events of a started report, in id order: every event of the tenant
 * whose actor key or subject key is one of the subject's, except the
 * report's own.  SECURITY INVOKER: the rows come through the row-level
 * policies and custos.events as the caller sees them (and the read is
 * audited like any read of the log); only finding the keys needed the
 * definer.
 *
 * Withheld, by default, where someone else acted on the subject's data: the
 * actor's identity (actor, actor_name, source_ip, user_agent, access), per
 * C-579/21 (the data subject is owed dates and purposes, generally not the
 * employees' names); include_accessors gives them.  Always withheld, where
 * the subject acted on another person's data: that person's fields (subject,
 * description, previous_state, new_state, metadata), per Art. 15(4).  Events
 * whose personal data is anonymised or erased carry that state and no
 * values (custos.events already gives NULLs).
 */
CREATE FUNCTION custos.subject_report_rows(report_id bigint) RETURNS SETOF custos.subject_event
	LANGUAGE sql STABLE AS $$
	SELECT x.id, x.tenant, x.occurred_at, x.recorded_at, x.by_subject, x.about_subject,
		   x.category OPERATOR(pg_catalog.=) 'access'
			   OR x.action OPERATOR(pg_catalog.=) ANY ('{READ,VIEW,EXPORT,DOWNLOAD}'::text[]),
		   x.category, x.action, x.resource_type, x.resource_id, x.resource_name, x.target_level, x.target_name,
		   x.outcome, x.metadata OPERATOR(pg_catalog.->>) 'purpose', x.personal_data,
		   CASE WHEN NOT x.hide_actor THEN x.actor END, x.actor_type,
		   CASE WHEN NOT x.hide_actor THEN x.actor_name END,
		   CASE WHEN NOT x.hide_actor THEN x.source_ip END,
		   CASE WHEN NOT x.hide_actor THEN x.user_agent END,
		   CASE WHEN NOT x.hide_other THEN x.subject END,
		   CASE WHEN NOT x.hide_other THEN x.description END,
		   CASE WHEN NOT x.hide_other THEN x.previous_state END,
		   CASE WHEN NOT x.hide_other THEN x.new_state END,
		   CASE WHEN NOT x.hide_other THEN x.metadata END,
		   x.request_id,
		   CASE WHEN NOT x.hide_actor THEN x.access END,
		   x.sealed, x.seq,
		   CASE WHEN x.hide_actor THEN '{actor,actor_name,source_ip,user_agent,access}'::text[]
				WHEN x.hide_other THEN '{subject,description,previous_state,new_state,metadata}'::text[]
				ELSE '{}'::text[] END
	  FROM (SELECT e.*, l.by_subject, l.about_subject,
				   l.about_subject AND NOT l.by_subject AND NOT s.include_accessors AS hide_actor,
				   l.by_subject AND NOT l.about_subject AND l.has_subject AS hide_other
			  FROM (SELECT * FROM custos.subject_report_scope($1) OFFSET 0) s,
				   LATERAL (SELECT g.id,
								   g.actor_key_id OPERATOR(pg_catalog.=) ANY (s.actor_keys) AS by_subject,
								   coalesce(g.subject_key_id OPERATOR(pg_catalog.=) ANY (s.subject_keys), false) AS about_subject,
								   g.subject_key_id IS NOT NULL AS has_subject
							  FROM custos.event_log g
							 WHERE g.tenant OPERATOR(pg_catalog.=) s.tenant
							   AND g.id OPERATOR(pg_catalog.<>) $1
							   AND (g.actor_key_id OPERATOR(pg_catalog.=) ANY (s.actor_keys)
									OR g.subject_key_id OPERATOR(pg_catalog.=) ANY (s.subject_keys))) l
			  JOIN custos.events e ON e.id OPERATOR(pg_catalog.=) l.id) x
	 ORDER BY x.id
$$;
COMMENT ON FUNCTION custos.subject_report_rows(bigint) IS
	'The events of a started subject access report (custos.subject_report_start()), in id order, with withheld fields NULL and named.';

CREATE TYPE custos.subject_event_csv AS (
	id bigint, tenant text, occurred_at text, recorded_at text, by_subject boolean, about_subject boolean,
	is_access boolean, category text, action text, resource_type text, resource_id text, resource_name text,
	target_level text, target_name text, outcome text, purpose text, personal_data text,
	actor text, actor_type text, actor_name text, source_ip text, user_agent text, subject text,
	description text, previous_state text, new_state text, metadata text, request_id text, access text,
	sealed boolean, seq bigint, withheld text);
COMMENT ON TYPE custos.subject_event_csv IS
	'A row of a subject access report as CSV: times in RFC 3339 UTC, JSON as text, formulas neutralised, withheld fields space-separated.';

/*
 * The rows of a started report for COPY ... TO STDOUT WITH (FORMAT csv,
 * HEADER): COPY quotes (RFC 4180), custos.csv_cell() neutralises formulas.
 *   SELECT custos.subject_report_start('t', 's') AS rid \gset
 *   COPY (SELECT * FROM custos.subject_report_csv(:rid)) TO STDOUT WITH (FORMAT csv, HEADER);
 * Two statements: a statement does not see an event it appends itself.
 */
CREATE FUNCTION custos.subject_report_csv(report_id bigint) RETURNS SETOF custos.subject_event_csv
	LANGUAGE sql STABLE AS $$
	SELECT r.id, custos.csv_cell(r.tenant),
		   pg_catalog.to_char(pg_catalog.timezone('UTC', r.occurred_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
		   pg_catalog.to_char(pg_catalog.timezone('UTC', r.recorded_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
		   r.by_subject, r.about_subject, r.is_access,
		   custos.csv_cell(r.category), custos.csv_cell(r.action), custos.csv_cell(r.resource_type),
		   custos.csv_cell(r.resource_id), custos.csv_cell(r.resource_name), custos.csv_cell(r.target_level),
		   custos.csv_cell(r.target_name), custos.csv_cell(r.outcome), custos.csv_cell(r.purpose),
		   r.personal_data, custos.csv_cell(r.actor), custos.csv_cell(r.actor_type),
		   custos.csv_cell(r.actor_name), r.source_ip::text, custos.csv_cell(r.user_agent),
		   custos.csv_cell(r.subject), custos.csv_cell(r.description),
		   custos.csv_cell(r.previous_state::text), custos.csv_cell(r.new_state::text),
		   custos.csv_cell(r.metadata::text), custos.csv_cell(r.request_id), custos.csv_cell(r.access),
		   r.sealed, r.seq, pg_catalog.array_to_string(r.withheld, ' ')
	  FROM custos.subject_report_rows($1) r
$$;
COMMENT ON FUNCTION custos.subject_report_csv(bigint) IS
	'The rows of a started subject access report for COPY ... CSV, formulas neutralised (custos.csv_cell()).';

/*
 * COPY takes no parameters: the gateway validates the started report here
 * and keeps its id for the rest of the transaction in custos_report.id,
 * which its constant COPY statement reads.  The setting names a report the
 * caller started; custos.subject_report_scope() checks that again.
 */
CREATE FUNCTION custos.subject_report_prepare(report_id bigint) RETURNS void
	LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM custos.subject_report_scope($1);
	PERFORM pg_catalog.set_config('custos_report.id', $1::text, true);
END
$$;
COMMENT ON FUNCTION custos.subject_report_prepare(bigint) IS
	'Checks a started subject access report and keeps its id for the transaction in custos_report.id (the gateway''s CSV COPY).';

/*
 * The whole report as one jsonb document, in one transaction with its audit
 * event:
 *   {"report": "subject-access", "format": 1, "legal_basis", "report_id",
 *    "tenant", "subject", "generated_at", "accessors_included",
 *    "counts": {...}, "events": [...], "accesses": [...]}
 * "accesses" lists the accesses to the subject's data (category access, or
 * READ, VIEW, EXPORT, DOWNLOAD about the subject by someone else): date,
 * what, purpose, outcome, and the accessor only when asked for.
 */
CREATE FUNCTION custos.subject_report(tenant text, subject text, include_accessors boolean DEFAULT false,
									  reason text DEFAULT NULL)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	rid bigint := custos.subject_report_start($1, $2, $3, $4);
	doc jsonb;
BEGIN
	SELECT pg_catalog.jsonb_build_object(
			   'report', 'subject-access', 'format', 1,
			   'legal_basis', 'GDPR Art. 15 (right of access); CJEU C-579/21 on accessors',
			   'report_id', rid, 'tenant', $1, 'subject', $2,
			   'generated_at', pg_catalog.now(),
			   'accessors_included', coalesce($3, false),
			   'counts', pg_catalog.jsonb_build_object(
				   'events', pg_catalog.count(*),
				   'by_subject', pg_catalog.count(*) FILTER (WHERE r.by_subject),
				   'about_subject', pg_catalog.count(*) FILTER (WHERE r.about_subject),
				   'accesses', pg_catalog.count(*) FILTER (WHERE r.about_subject AND NOT r.by_subject AND r.is_access),
				   'anonymised', pg_catalog.count(*) FILTER (WHERE r.personal_data = 'anonymised'),
				   'erased', pg_catalog.count(*) FILTER (WHERE r.personal_data = 'erased'),
				   'hidden', pg_catalog.count(*) FILTER (WHERE r.personal_data = 'hidden')),
			   'events', coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r) ORDER BY r.id), '[]'),
			   'accesses', coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
									  'event_id', r.id, 'occurred_at', r.occurred_at,
									  'category', r.category, 'action', r.action,
									  'resource_type', r.resource_type, 'resource_id', r.resource_id,
									  'purpose', r.purpose, 'outcome', r.outcome, 'actor_type', r.actor_type,
									  'accessor', r.actor, 'accessor_name', r.actor_name)) ORDER BY r.id)
									  FILTER (WHERE r.about_subject AND NOT r.by_subject AND r.is_access), '[]'))
	  INTO doc
	  FROM custos.subject_report_rows(rid) r;	-- aggregates only: one row, also for no events
	RETURN doc;
END
$$;
COMMENT ON FUNCTION custos.subject_report(text, text, boolean, text) IS
	'GDPR Art. 15 subject access report of one tenant as jsonb; recorded as an audit event.  include_accessors (with a reason) names who accessed the subject''s data.';

-- ---------------------------------------------------------------------------
-- Support report (seed 001: a server report without secrets)
-- ---------------------------------------------------------------------------

/*
 * Server settings a support engineer may see: an allow-list by name.  Of
 * custos' own settings, every bool, integer, real and enum one (they cannot
 * hold a secret) and the string ones listed here; any other string setting
 * of custos is named with its value withheld.  Nothing else: not
 * primary_conninfo, not a custom setting of an application, not a role's
 * or database's per-session settings.
 */
CREATE FUNCTION custos.support_settings() RETURNS jsonb
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(pg_catalog.jsonb_object_agg(s.name,
			   CASE WHEN s.name LIKE 'custos.%' AND s.vartype = 'string'
						 AND NOT (s.name = ANY ('{custos.database}'::text[]))
					THEN pg_catalog.jsonb_build_object('withheld', true)
					ELSE pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
							 'value', s.setting, 'unit', s.unit, 'source', s.source))
			   END ORDER BY s.name), '{}')
	  FROM pg_catalog.pg_settings s
	 WHERE s.name LIKE 'custos.%'
		OR s.name = ANY ('{server_version, server_version_num, server_encoding, shared_preload_libraries,
						   session_preload_libraries, max_connections, shared_buffers, work_mem,
						   maintenance_work_mem, effective_cache_size, max_worker_processes,
						   max_parallel_workers, max_prepared_transactions, wal_level,
						   synchronous_commit, fsync, full_page_writes, max_wal_size, checkpoint_timeout,
						   archive_mode, track_commit_timestamp, default_transaction_isolation,
						   statement_timeout, idle_in_transaction_session_timeout, jit, TimeZone,
						   log_timezone, DateStyle, lc_collate, lc_ctype, data_checksums, block_size,
						   autovacuum, ssl, password_encryption, row_security, cron.database_name,
						   cron.use_background_workers, cron.max_running_jobs}'::text[])
$$;
COMMENT ON FUNCTION custos.support_settings() IS
	'Internal: the allow-listed server settings of a support report (never a conninfo, password, token or key).';
REVOKE ALL ON FUNCTION custos.support_settings() FROM PUBLIC;

/*
 * The support report, as jsonb.  Scope: one tenant and the tenants below it,
 * or (tenant NULL) the installation.  Who may:
 *
 *	- installation: a superuser without a principal, or an owner/admin of the
 *	  installation tenant "custos-system" with a personal token;
 *	- a tenant: a superuser without a principal, or an owner/admin of the
 *	  tenant or of a tenant above it, with a personal token;
 *	- with personal data (a tenant only): the tenant's own owner, with a
 *	  personal token and a reason.
 *
 * Every report is an audit event (action EXPORT, resource_type REPORT,
 * resource_id "support") of the tenant, or of custos-system; with personal
 * data its category is privacy and it names who (the actor) and why
 * (new_state.reason).
 *
 * Without personal data the report reads no personal field, no event's
 * resource names or ids, no principal's name, no token, key, secret or
 * password: counts, states and allow-listed settings only.
 */
CREATE FUNCTION custos.support_report(include_personal_data boolean DEFAULT false, tenant text DEFAULT NULL,
									  reason text DEFAULT NULL)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	personal boolean := coalesce($1, false);
	t text := $2;
	why text := pg_catalog.btrim($3);
	me custos.principal;
	covered text[];
	report_id bigint;
	doc jsonb;
	chains jsonb;
	jobs jsonb;
	extra jsonb;
BEGIN
	SELECT * INTO me FROM custos.principal p WHERE p.id = custos.current_principal();
	IF t IS NOT NULL AND custos.tenant_path(t) IS NULL THEN
		RAISE EXCEPTION 'tenant "%" does not exist', t USING ERRCODE = 'no_data_found';
	END IF;
	IF personal THEN
		IF t IS NULL THEN
			RAISE EXCEPTION 'a support report with personal data is of one tenant' USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Name the tenant whose personal data the report may contain.';
		END IF;
		IF me.id IS NULL OR me.tenant <> t OR me.role <> 'owner' OR NOT custos.sees_all_actions() THEN
			RAISE EXCEPTION 'only the owner of tenant "%" may include personal data in a support report', t
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'Personal data leaves the installation only with the knowledge of the tenant''s own owner, authenticated with a personal token; admins, principals of tenants above and superusers cannot decide it.';
		END IF;
		IF why IS NULL OR why = '' THEN
			RAISE EXCEPTION 'a support report with personal data needs a reason' USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Give the support case, e.g. ''ticket 4711: logins fail''.';
		END IF;
		IF pg_catalog.octet_length(why) > 1024 THEN
			RAISE EXCEPTION 'reason is longer than 1024 bytes' USING ERRCODE = 'string_data_right_truncation';
		END IF;
	ELSIF me.id IS NULL THEN
		IF NOT custos.caller_is_superuser() THEN
			RAISE EXCEPTION 'a support report needs an authenticated principal' USING ERRCODE = 'insufficient_privilege',
				DETAIL = 'Only superusers may produce one without a principal.',
				HINT = 'Call custos.authenticate(token) first in this transaction.';
		END IF;
	ELSIF NOT (me.role IN ('owner', 'admin') AND custos.sees_all_actions()
			   AND me.tenant = ANY (custos.tenant_path(coalesce(t, 'custos-system')))) THEN
		RAISE EXCEPTION 'principal "%" may not produce a support report of %', me.id,
			coalesce('tenant "' || t || '"', 'the installation')
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A support report is produced by an owner or admin, with a personal token, of the tenant or a tenant above it; of the installation, by one of tenant "custos-system" or a superuser.';
	END IF;

	-- the tenants covered
	IF t IS NULL THEN
		SELECT pg_catalog.array_agg(x.id ORDER BY x.id) INTO covered FROM custos.tenant x;
	ELSE
		WITH RECURSIVE sub(id) AS (
			SELECT t UNION ALL SELECT c.id FROM custos.tenant c JOIN sub ON c.parent = sub.id)
		SELECT pg_catalog.array_agg(sub.id ORDER BY sub.id) INTO covered FROM sub;
	END IF;

	report_id := custos.log(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
		'tenant', coalesce(t, 'custos-system'), 'category', CASE WHEN personal THEN 'privacy' ELSE 'system' END,
		'action', 'EXPORT', 'resource_type', 'REPORT', 'resource_id', 'support',
		'resource_name', 'support report',
		'new_state', pg_catalog.jsonb_build_object('include_personal_data', personal, 'reason', why,
												   'scope', coalesce(t, 'installation')))));

	-- chains: custos.verify() per tenant (a failure is a kind and positions, never event data)
	SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
			   'tenant', v.tenant, 'ok', v.ok, 'events_checked', v.events_checked,
			   'blocks_checked', v.blocks_checked, 'pending', v.pending, 'size', v.size,
			   'failure', v.failure, 'failed_seq', v.failed_seq, 'failed_event_id', v.failed_event_id,
			   'failed_block', v.failed_block, 'detail', v.detail) ORDER BY v.tenant), '[]')
	  INTO chains
	  FROM pg_catalog.unnest(covered) s(id), LATERAL custos.verify(s.id) v
	 WHERE EXISTS (SELECT 1 FROM custos.event_log e WHERE e.tenant = s.id);

	-- jobs: the retention and anonymisation jobs of 0.5, per tenant covered
	SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(j) ORDER BY j.tenant, j.job), '[]') INTO jobs
	  FROM custos.job_status j WHERE j.tenant = ANY (covered);

	doc := pg_catalog.jsonb_build_object(
		'report', 'support', 'format', 1, 'report_id', report_id,
		'generated_at', pg_catalog.now(),
		'scope', coalesce(t, 'installation'),
		'includes_personal_data', personal,
		'versions', pg_catalog.jsonb_build_object(
			'custos', (SELECT x.extversion FROM pg_catalog.pg_extension x WHERE x.extname = 'custos'),
			'custos_default', (SELECT a.default_version FROM pg_catalog.pg_available_extensions a WHERE a.name = 'custos'),
			'pgcrypto', (SELECT x.extversion FROM pg_catalog.pg_extension x WHERE x.extname = 'pgcrypto'),
			'pg_cron', (SELECT x.extversion FROM pg_catalog.pg_extension x WHERE x.extname = 'pg_cron'),
			'postgresql', pg_catalog.current_setting('server_version'),
			'postgresql_num', pg_catalog.current_setting('server_version_num')::integer),
		'settings', custos.support_settings(),
		'sealer', (SELECT pg_catalog.to_jsonb(st) FROM custos.status() st),
		'chains', chains,
		'jobs', jobs,
		'counts', pg_catalog.jsonb_build_object(
			'tenants', pg_catalog.cardinality(covered),
			'tenants_in_privacy_mode', (SELECT pg_catalog.count(*) FROM custos.tenant x WHERE x.id = ANY (covered) AND x.privacy_mode),
			'principals', (SELECT coalesce(pg_catalog.jsonb_object_agg(k, n), '{}') FROM (
				SELECT p.kind || '/' || p.role || CASE WHEN p.disabled_at IS NULL THEN '' ELSE '/disabled' END AS k,
					   pg_catalog.count(*) AS n
				  FROM custos.principal p WHERE p.tenant = ANY (covered) GROUP BY 1) q),
			'tokens', (SELECT coalesce(pg_catalog.jsonb_object_agg(k, n), '{}') FROM (
				SELECT k.kind || '/' || CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked'
											  WHEN k.expires_at <= pg_catalog.now() THEN 'expired'
											  ELSE 'live' END AS k,
					   pg_catalog.count(*) AS n
				  FROM custos.token k JOIN custos.principal p ON p.id = k.principal
				 WHERE p.tenant = ANY (covered) GROUP BY 1) q),
			'grants_live', (SELECT coalesce(pg_catalog.jsonb_object_agg(q.right_name, q.n), '{}') FROM (
				SELECT g.right_name, pg_catalog.count(*) AS n FROM custos.right_grant g
				 WHERE g.tenant = ANY (covered) AND g.revoked_at IS NULL
				   AND (g.expires_at IS NULL OR g.expires_at > pg_catalog.now()) GROUP BY 1) q),
			'protected_tables', (SELECT pg_catalog.count(*) FROM custos.protected_table),
			'events', (SELECT pg_catalog.count(*) FROM custos.event_log e WHERE e.tenant = ANY (covered)),
			'events_by_outcome', (SELECT coalesce(pg_catalog.jsonb_object_agg(q.outcome, q.n), '{}') FROM (
				SELECT e.outcome, pg_catalog.count(*) AS n FROM custos.event_log e
				 WHERE e.tenant = ANY (covered) GROUP BY 1) q),
			'data_keys', (SELECT coalesce(pg_catalog.jsonb_object_agg(k, n), '{}') FROM (
				SELECT d.scope || '/' || CASE WHEN d.key IS NULL THEN 'shredded' ELSE 'live' END AS k,
					   pg_catalog.count(*) AS n
				  FROM custos.data_key d WHERE d.tenant = ANY (covered) GROUP BY 1) q),
			'blocks', (SELECT pg_catalog.count(*) FROM custos.block b WHERE b.tenant = ANY (covered)),
			'checkpoints', (SELECT pg_catalog.count(*) FROM custos.checkpoint c WHERE c.tenant = ANY (covered))),
		-- problems: denied and failed events by tenant, category and action (no
		-- resource, no actor: those may name people), and chains that fail
		'recent_problems', pg_catalog.jsonb_build_object(
			'since', pg_catalog.now() - interval '7 days',
			'events', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(q) ORDER BY q.tenant, q.category, q.action, q.outcome), '[]') FROM (
				SELECT e.tenant, e.category, e.action, e.outcome, pg_catalog.count(*) AS events,
					   pg_catalog.count(*) FILTER (WHERE e.recorded_at > pg_catalog.now() - interval '24 hours') AS last_24h,
					   pg_catalog.max(e.recorded_at) AS last_at
				  FROM custos.event_log e
				 WHERE e.tenant = ANY (covered) AND e.outcome IN ('denied', 'failure')
				   AND e.recorded_at > pg_catalog.now() - interval '7 days'
				 GROUP BY 1, 2, 3, 4) q),
			'chains_failing', (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_array_elements(chains) c
								WHERE NOT (c ->> 'ok')::boolean)));

	IF personal THEN
		-- the tenant's own: its principals by name, and its latest problems with who and what
		SELECT pg_catalog.jsonb_build_object(
				   'tenant', t, 'reason', why, 'generated_by', me.id,
				   'principals', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
										'id', p.id, 'name', p.name, 'kind', p.kind, 'role', p.role,
										'disabled', p.disabled_at IS NOT NULL) ORDER BY p.id), '[]')
									FROM custos.principal p WHERE p.tenant = t),
				   'recent_problem_events', (SELECT coalesce(pg_catalog.jsonb_agg(q ORDER BY (q ->> 'id')::bigint DESC), '[]') FROM (
						SELECT pg_catalog.jsonb_build_object(
								   'id', e.id, 'occurred_at', e.occurred_at, 'category', e.category,
								   'action', e.action, 'outcome', e.outcome, 'resource_type', e.resource_type,
								   'resource_id', e.resource_id, 'actor', e.actor, 'actor_name', e.actor_name,
								   'source_ip', e.source_ip, 'user_agent', e.user_agent,
								   'description', e.description, 'personal_data', e.personal_data) AS q
						  FROM custos.events e
						 WHERE e.tenant = t AND e.outcome IN ('denied', 'failure')
						 ORDER BY e.id DESC LIMIT 50) r))
		  INTO extra;
		doc := doc || pg_catalog.jsonb_build_object('personal_data', extra);
	END IF;
	RETURN doc;
END
$$;
COMMENT ON FUNCTION custos.support_report(boolean, text, text) IS
	'A support report (versions, allow-listed settings, chains, jobs, counts, recent problems) of a tenant or the installation, without personal data or secrets; with personal data only by the tenant''s own owner, with a reason.  Recorded as an audit event.';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------

-- require_subject_report and subject_report_scope check the caller and are
-- called from the invoker-rights functions, so PUBLIC needs EXECUTE;
-- support_settings is internal (REVOKEd above), as is 0.5's scope_ref.
GRANT EXECUTE ON FUNCTION custos.require_subject_report(text),
	custos.subject_report_start(text, text, boolean, text), custos.subject_report_scope(bigint),
	custos.subject_report_rows(bigint), custos.subject_report_csv(bigint),
	custos.subject_report_prepare(bigint), custos.subject_report(text, text, boolean, text),
	custos.support_report(boolean, text, text)
	TO PUBLIC;

-- ---------------------------------------------------------------------------
-- HTTP API of retention, legal holds and erasure (custos-gateway)
--
-- Thin jsonb wrappers in the style of the 0.3 API: the gateway passes the
-- client's JSON body as it came, these check its shape (unknown fields and
-- wrong types are 22023, a missing required field 23502) and call the 0.5
-- functions, which check the caller (require_admin) and write the audit
-- events.  Invoker rights, like the 0.3 wrappers: they add no privilege.
-- ---------------------------------------------------------------------------

-- The integer field "key" of obj: NULL if absent or null; 22023 if it is not
-- a whole JSON number or does not fit an integer.
CREATE FUNCTION custos.json_integer(obj jsonb, key text) RETURNS integer
	LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	n numeric;
BEGIN
	IF obj OPERATOR(pg_catalog.->) key IS NULL
	   OR pg_catalog.jsonb_typeof(obj OPERATOR(pg_catalog.->) key) OPERATOR(pg_catalog.=) 'null' THEN
		RETURN NULL;
	END IF;
	IF pg_catalog.jsonb_typeof(obj OPERATOR(pg_catalog.->) key) OPERATOR(pg_catalog.<>) 'number' THEN
		RAISE EXCEPTION 'field "%" must be a whole number', key USING ERRCODE = 'invalid_parameter_value';
	END IF;
	n := (obj OPERATOR(pg_catalog.->>) key)::numeric;
	IF n OPERATOR(pg_catalog.<>) pg_catalog.trunc(n) THEN
		RAISE EXCEPTION 'field "%" must be a whole number', key USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF n NOT BETWEEN -2147483648 AND 2147483647 THEN
		RAISE EXCEPTION 'field "%" is out of range', key USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN n::integer;
END
$$;
COMMENT ON FUNCTION custos.json_integer(jsonb, text) IS 'Internal: an integer field of a JSON request body.';

/*
 * Raises P0002 for an unknown tenant and 42501 unless the caller may read
 * its retention settings: exactly those whose rows custos.retention_policies
 * and custos.legal_holds show, the tenants whose audit log it may read, or a
 * superuser.  Needed because an empty list of holds would not tell "none"
 * from "not yours".  SECURITY DEFINER for custos.tenant_path(), which
 * PUBLIC may not call.
 */
CREATE FUNCTION custos.require_retention_reader(tenant text) RETURNS void
	LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF custos.tenant_path($1) IS NULL THEN
		RAISE EXCEPTION 'tenant "%" does not exist', $1 USING ERRCODE = 'no_data_found';
	END IF;
	IF NOT ($1 = ANY (custos.visible_tenants()) OR custos.caller_is_superuser()) THEN
		RAISE EXCEPTION 'the caller may not read the retention settings of tenant "%"', $1
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Retention policies and legal holds are shown to those who may read the tenant''s audit log: its owners and admins, those of tenants above it, and holders of audit.read.';
	END IF;
END
$$;
COMMENT ON FUNCTION custos.require_retention_reader(text) IS
	'Authorisation check of get_retention_policy and list_legal_holds: 404 for an unknown tenant, 42501 unless the caller may read its audit log.';

CREATE FUNCTION custos.get_retention_policy(tenant text) RETURNS jsonb
	LANGUAGE plpgsql STABLE AS $$
DECLARE
	result jsonb;
BEGIN
	PERFORM custos.require_retention_reader($1);
	SELECT pg_catalog.to_jsonb(p) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
			   'default_days', b.default_days, 'min_days', b.min_days, 'max_days', b.max_days)
	  INTO result
	  FROM custos.retention_policies p CROSS JOIN custos.retention_bounds() b
	 WHERE p.tenant OPERATOR(pg_catalog.=) $1;
	RETURN result;
END
$$;
COMMENT ON FUNCTION custos.get_retention_policy(text) IS
	'The row of custos.retention_policies of one tenant and the installation''s bounds, as jsonb (HTTP GET /v1/tenants/{tenant}/retention).';

CREATE FUNCTION custos.put_retention_policy(tenant text, policy jsonb) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM custos.check_keys(policy, 'retention policy', ARRAY['retention_days', 'anonymize_days']);
	IF custos.json_integer(policy, 'retention_days') IS NULL THEN
		RAISE EXCEPTION 'a retention policy needs "retention_days"' USING ERRCODE = 'not_null_violation',
			HINT = 'Send {"retention_days": n, "anonymize_days": m or null}.';
	END IF;
	RETURN custos.set_retention_policy($1, custos.json_integer(policy, 'retention_days'),
									   custos.json_integer(policy, 'anonymize_days'));
END
$$;
COMMENT ON FUNCTION custos.put_retention_policy(text, jsonb) IS
	'custos.set_retention_policy() with {"retention_days", "anonymize_days"} (absent or null: never anonymise early) (HTTP PUT /v1/tenants/{tenant}/retention).';

CREATE FUNCTION custos.list_legal_holds(tenant text) RETURNS jsonb
	LANGUAGE plpgsql STABLE AS $$
BEGIN
	PERFORM custos.require_retention_reader($1);
	RETURN pg_catalog.jsonb_build_object('tenant', $1, 'legal_holds',
		(SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(h) OPERATOR(pg_catalog.||)
											  pg_catalog.jsonb_build_object('active', h.lifted_at IS NULL)
											  ORDER BY h.hold_id), '[]')
		   FROM custos.legal_holds h WHERE h.tenant OPERATOR(pg_catalog.=) $1));
END
$$;
COMMENT ON FUNCTION custos.list_legal_holds(text) IS
	'The legal holds of one tenant, lifted ones included, from custos.legal_holds (HTTP GET /v1/tenants/{tenant}/legal-holds).';

-- A hold as custos.legal_holds shows it, with "active"; the bare facts if the
-- caller cannot see it there.
CREATE FUNCTION custos.legal_hold_json(hold_id bigint) RETURNS jsonb
	LANGUAGE sql STABLE AS $$
	SELECT coalesce((SELECT pg_catalog.to_jsonb(h) OPERATOR(pg_catalog.||)
							pg_catalog.jsonb_build_object('active', h.lifted_at IS NULL)
					   FROM custos.legal_holds h WHERE h.hold_id OPERATOR(pg_catalog.=) $1),
					pg_catalog.jsonb_build_object('hold_id', $1))
$$;
COMMENT ON FUNCTION custos.legal_hold_json(bigint) IS 'Internal: a legal hold as the HTTP API answers with it.';

CREATE FUNCTION custos.create_legal_hold(tenant text, hold jsonb) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	subject text;
	reason text;
	id bigint;
BEGIN
	PERFORM custos.check_keys(hold, 'legal hold', ARRAY['subject', 'reason']);
	subject := custos.json_text(hold, 'subject');
	reason := custos.json_text(hold, 'reason');
	IF reason IS NULL THEN
		RAISE EXCEPTION 'a legal hold needs "reason"' USING ERRCODE = 'not_null_violation',
			HINT = 'Name the matter, e.g. a case or ticket number; add "subject" to hold one data subject only.';
	END IF;
	IF pg_catalog.octet_length(subject) > 1024 THEN
		RAISE EXCEPTION 'subject is longer than 1024 bytes' USING ERRCODE = 'string_data_right_truncation';
	END IF;
	id := custos.place_legal_hold($1, subject, reason);
	-- a statement of its own: legal_hold_json() is STABLE and sees the
	-- hold only in a snapshot taken after it was placed
	RETURN custos.legal_hold_json(id);
END
$$;
COMMENT ON FUNCTION custos.create_legal_hold(text, jsonb) IS
	'custos.place_legal_hold() with {"subject" (absent: the whole tenant), "reason"}; returns the hold (HTTP POST /v1/tenants/{tenant}/legal-holds).';

CREATE FUNCTION custos.delete_legal_hold(hold_id bigint, request jsonb DEFAULT NULL) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	reason text;
BEGIN
	PERFORM custos.check_keys(coalesce(request, '{}'), 'legal hold release', ARRAY['reason']);
	reason := custos.json_text(request, 'reason');
	IF pg_catalog.octet_length(reason) > 1024 THEN
		RAISE EXCEPTION 'reason is longer than 1024 bytes' USING ERRCODE = 'string_data_right_truncation';
	END IF;
	PERFORM custos.lift_legal_hold($1, reason);
	RETURN custos.legal_hold_json($1);
END
$$;
COMMENT ON FUNCTION custos.delete_legal_hold(bigint, jsonb) IS
	'custos.lift_legal_hold() with an optional {"reason"}; returns the lifted hold (HTTP DELETE /v1/legal-holds/{id}).';

CREATE FUNCTION custos.create_erasure(tenant text, request jsonb) RETURNS jsonb
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	subject text;
	reason text;
BEGIN
	PERFORM custos.check_keys(request, 'erasure request', ARRAY['subject', 'reason']);
	subject := custos.json_text(request, 'subject');
	reason := custos.json_text(request, 'reason');
	-- over HTTP the reason is required: the erasure's audit event is the
	-- controller's record of which request it answered (Art. 5(2))
	IF subject IS NULL OR reason IS NULL THEN
		RAISE EXCEPTION 'an erasure request needs "subject" and "reason"' USING ERRCODE = 'not_null_violation',
			HINT = 'Give the data subject''s id as events name it, and the request it answers, e.g. a ticket number.';
	END IF;
	IF pg_catalog.octet_length(subject) > 1024 OR pg_catalog.octet_length(reason) > 1024 THEN
		RAISE EXCEPTION 'subject or reason is longer than 1024 bytes' USING ERRCODE = 'string_data_right_truncation';
	END IF;
	IF pg_catalog.btrim(reason) OPERATOR(pg_catalog.=) '' THEN
		RAISE EXCEPTION 'the reason of an erasure must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN custos.erase_subject($1, subject, reason);
END
$$;
COMMENT ON FUNCTION custos.create_erasure(text, jsonb) IS
	'custos.erase_subject() with {"subject", "reason"} (both required) (HTTP POST /v1/tenants/{tenant}/erasures).';

-- The wrappers add no privilege (invoker rights; the 0.5 functions and views
-- they call check the caller), so PUBLIC may execute them, as the 0.3 API.
GRANT EXECUTE ON FUNCTION custos.json_integer(jsonb, text), custos.require_retention_reader(text),
	custos.get_retention_policy(text), custos.put_retention_policy(text, jsonb),
	custos.list_legal_holds(text), custos.legal_hold_json(bigint),
	custos.create_legal_hold(text, jsonb), custos.delete_legal_hold(bigint, jsonb),
	custos.create_erasure(text, jsonb)
	TO PUBLIC;
