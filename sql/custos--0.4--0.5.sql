/*
 * custos--0.4--0.5.sql: retention, anonymization, erasure and legal holds (issue 5)
 */

\echo Use "ALTER EXTENSION custos UPDATE TO '0.5'" to load this file. \quit
/*
 * What this version adds (docs/retention.md):
 *
 *	- per-tenant policies: a retention period (default 180 days) and an
 *	  optional, shorter anonymisation period, within bounds the DBA sets
 *	  (custos.retention_min_days / _max_days / _default_days); changed by the
 *	  tenant's owners and admins, every change an audit event;
 *	- legal holds on a tenant or on a data subject within it: held events
 *	  are neither deleted nor anonymised, and cannot be erased;
 *	- the jobs: CALL custos.anonymize(), CALL custos.apply_retention() (or
 *	  both: CALL custos.run_jobs()), in batches that commit one by one, each
 *	  run recorded in custos.job_run and as a "system" audit event;
 *	- custos.erase_subject() (GDPR Art. 17);
 *	- custos.schedule_jobs(): the jobs in pg_cron, when it is there.
 *
 * Periods count from recorded_at, which custos sets, never from the
 * client's occurred_at: a client cannot backdate events into early
 * deletion.  Everything personal is removed by destroying keys
 * (retention.c); events are only ever deleted whole, and every deletion is
 * recorded as a cut so that the remaining chain still verifies.
 */

-- ---------------------------------------------------------------------------
-- Storage
-- ---------------------------------------------------------------------------

CREATE TABLE custos.retention_policy (
	tenant			text		NOT NULL REFERENCES custos.tenant (id),
	retention_days	integer		NOT NULL,
	anonymize_days	integer,
	updated_at		timestamptz	NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	updated_by		text		NOT NULL,
	CONSTRAINT retention_policy_pkey PRIMARY KEY (tenant),
	CONSTRAINT retention_policy_days CHECK (retention_days >= 1),
	CONSTRAINT retention_policy_anonymize CHECK (anonymize_days IS NULL OR
												 anonymize_days BETWEEN 1 AND retention_days)
);
COMMENT ON TABLE custos.retention_policy IS
	'Tenants whose periods differ from the installation default (custos.retention_default_days).';

CREATE TABLE custos.legal_hold (
	hold_id			bigint		GENERATED ALWAYS AS IDENTITY,
	tenant			text		NOT NULL REFERENCES custos.tenant (id),
	actor_ref		bytea,
	subject_ref		bytea,
	reason			text		NOT NULL,
	placed_by		text		NOT NULL,
	placed_at		timestamptz	NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	lifted_by		text,
	lifted_at		timestamptz,
	lift_reason		text,
	CONSTRAINT legal_hold_pkey PRIMARY KEY (hold_id),
	CONSTRAINT legal_hold_scope CHECK ((actor_ref IS NULL) = (subject_ref IS NULL)),
	CONSTRAINT legal_hold_lifted CHECK ((lifted_at IS NULL) = (lifted_by IS NULL))
);
CREATE INDEX legal_hold_live ON custos.legal_hold (tenant) WHERE lifted_at IS NULL;
COMMENT ON TABLE custos.legal_hold IS
	'Legal holds.  A subject is held by its key references (custos.scope_ref), never by its id in clear; NULL references hold the whole tenant.';

-- Erasure and holds find a subject's keys by reference, destroyed ones too.
CREATE INDEX data_key_ref ON custos.data_key (tenant, scope_ref);

CREATE TABLE custos.retention_cut (
	tenant			text		NOT NULL,
	id_lo			bigint		NOT NULL,
	id_hi			bigint		NOT NULL,
	run_id			bigint		NOT NULL,
	cut_at			timestamptz	NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	CONSTRAINT retention_cut_range CHECK (id_lo < id_hi)
);
CREATE INDEX retention_cut_tenant ON custos.retention_cut (tenant, id_lo);
COMMENT ON TABLE custos.retention_cut IS
	'Sealed events retention removed: every event of the tenant with id_lo <= id < id_hi is gone, and no kept one ever lay in the range.  custos.verify() accepts a sealed event as missing only inside one.';

CREATE TRIGGER guard_write BEFORE INSERT OR UPDATE OR DELETE ON custos.retention_cut
	FOR EACH STATEMENT EXECUTE FUNCTION custos.guard_storage();
CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON custos.retention_cut
	FOR EACH STATEMENT EXECUTE FUNCTION custos.guard_storage();

CREATE TABLE custos.job_run (
	run_id			bigint		GENERATED ALWAYS AS IDENTITY,
	job				text		NOT NULL,
	tenant			text		NOT NULL,
	as_of			timestamptz	NOT NULL,
	cutoff			timestamptz,
	started_at		timestamptz	NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	finished_at		timestamptz,
	outcome			text		NOT NULL DEFAULT 'running',
	events_deleted	bigint		NOT NULL DEFAULT 0,
	events_held		bigint		NOT NULL DEFAULT 0,
	keys_destroyed	bigint		NOT NULL DEFAULT 0,
	blocks_dropped	bigint		NOT NULL DEFAULT 0,
	oldest_cut		timestamptz,
	newest_cut		timestamptz,
	resume_after	bigint		NOT NULL DEFAULT 0,
	pid				integer		NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
	backend_start	timestamptz,
	CONSTRAINT job_run_pkey PRIMARY KEY (run_id),
	CONSTRAINT job_run_job CHECK (job IN ('anonymization', 'retention')),
	CONSTRAINT job_run_outcome CHECK (outcome IN ('running', 'ok', 'held'))
);
CREATE INDEX job_run_last ON custos.job_run (tenant, job, run_id);
COMMENT ON TABLE custos.job_run IS
	'One row per tenant and run of a job; committed as the run goes, so that an interrupted run is seen as such.';

SELECT pg_catalog.pg_extension_config_dump('custos.retention_policy', '');
SELECT pg_catalog.pg_extension_config_dump('custos.legal_hold', '');
SELECT pg_catalog.pg_extension_config_dump('custos.retention_cut', '');
SELECT pg_catalog.pg_extension_config_dump('custos.job_run', '');

-- ---------------------------------------------------------------------------
-- Primitives (retention.c)
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.scope_ref(tenant text, scope text, value text) RETURNS bytea
	LANGUAGE c STRICT STABLE AS 'MODULE_PATHNAME', 'custos_scope_ref';
COMMENT ON FUNCTION custos.scope_ref(text, text, text) IS
	'Where the keys of an actor or subject are found: HMAC-SHA-256 under the tenant secret.';

CREATE FUNCTION custos.destroy_keys(key_ids bigint[], reason text, forget_pseudonym boolean)
	RETURNS bigint
	LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'custos_destroy_keys';
COMMENT ON FUNCTION custos.destroy_keys(bigint[], text, boolean) IS
	'Crypto-shreds data keys: zeroes their bytes in place, then records them as destroyed.';

CREATE FUNCTION custos.retention_batch(tenant text, cutoff timestamptz, batch_size integer,
									   after_id bigint, held_keys bigint[], run_id bigint,
									   OUT deleted bigint, OUT held bigint, OUT oldest timestamptz,
									   OUT newest timestamptz, OUT last_id bigint, OUT done boolean)
	LANGUAGE c CALLED ON NULL INPUT VOLATILE AS 'MODULE_PATHNAME', 'custos_retention_batch';
COMMENT ON FUNCTION custos.retention_batch(text, timestamptz, integer, bigint, bigint[], bigint) IS
	'One batch of retention: deletes expired sealed events after after_id in id order, keeps held ones, records the cuts.';

CREATE FUNCTION custos.retention_compact(tenant text) RETURNS bigint
	LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'custos_retention_compact';
COMMENT ON FUNCTION custos.retention_compact(text) IS
	'Drops the tenant''s leading blocks whose events are all cut and moves its checkpoint to the last of them.';

-- ---------------------------------------------------------------------------
-- Policies
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.day_of(ts timestamptz) RETURNS integer
	LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
	SELECT pg_catalog.floor(pg_catalog.date_part('epoch', $1) / 86400)::integer
$$;
COMMENT ON FUNCTION custos.day_of(timestamptz) IS 'Days since 1970-01-01 UTC: the period of a data key.';

-- The DBA's bounds; the defaults apply where custos is not preloaded.
CREATE FUNCTION custos.retention_bounds(OUT default_days integer, OUT min_days integer,
										OUT max_days integer)
	LANGUAGE sql STABLE AS $$
	SELECT coalesce(pg_catalog.current_setting('custos.retention_default_days', true), '180')::integer,
		   coalesce(pg_catalog.current_setting('custos.retention_min_days', true), '1')::integer,
		   coalesce(pg_catalog.current_setting('custos.retention_max_days', true), '3650')::integer
$$;
COMMENT ON FUNCTION custos.retention_bounds() IS
	'The installation''s default retention and the bounds tenants may choose within (GUCs custos.retention_*_days).';

-- Tenants with events: the registered ones, and any a superuser logged to
-- (sealed events are in blocks).
-- a security barrier: the caller's own WHERE conditions run only on rows
-- the view lets through (no leaky function sees another tenant's rows)
CREATE VIEW custos.retention_policies WITH (security_barrier) AS
SELECT t.tenant,
	   coalesce(p.retention_days, LEAST(GREATEST(b.default_days, b.min_days), b.max_days)) AS retention_days,
	   p.anonymize_days,
	   p.tenant IS NOT NULL AS explicit,
	   p.updated_at,
	   p.updated_by,
	   EXISTS (SELECT 1 FROM custos.legal_hold h
				WHERE h.tenant = t.tenant AND h.lifted_at IS NULL AND h.subject_ref IS NULL) AS on_hold
  FROM (SELECT x.id FROM custos.tenant x
		UNION
		-- tenants of the blocks, one index probe each (a skip scan of block_pkey)
		(WITH RECURSIVE y(tenant) AS (
			SELECT pg_catalog.min(b.tenant) FROM custos.block b
			UNION ALL
			SELECT (SELECT pg_catalog.min(b.tenant) FROM custos.block b WHERE b.tenant > y.tenant)
			  FROM y WHERE y.tenant IS NOT NULL)
		 SELECT y.tenant FROM y WHERE y.tenant IS NOT NULL)) t(tenant)
  CROSS JOIN custos.retention_bounds() b
  LEFT JOIN custos.retention_policy p ON p.tenant = t.tenant
 WHERE t.tenant = ANY (custos.visible_tenants())
	OR custos.caller_is_superuser();
COMMENT ON VIEW custos.retention_policies IS
	'The periods in force per tenant (explicit = set by the tenant, else the installation default) and whether the tenant is on hold.';

-- Who decides about a tenant's data: require_admin(), except that a tenant
-- in privacy mode (itself, or a tenant between it and the caller) is decided
-- about by its own owners and admins only, as its data is hidden from those
-- above.  Returns the caller's principal (NULL for a superuser without one).
CREATE FUNCTION custos.require_data_admin(tenant text) RETURNS text
	LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me text := custos.require_admin($1);
	path text[] := custos.tenant_path($1);
	mine integer;
	shielding text;
BEGIN
	IF me IS NULL THEN
		RETURN NULL;
	END IF;
	SELECT n INTO mine FROM pg_catalog.unnest(path) WITH ORDINALITY u(id, n)
	 WHERE u.id = (SELECT p.tenant FROM custos.principal p WHERE p.id = me);
	SELECT u.id INTO shielding FROM pg_catalog.unnest(path) WITH ORDINALITY u(id, n)
	  JOIN custos.tenant t ON t.id = u.id
	 WHERE t.privacy_mode AND u.n < mine
	 ORDER BY u.n DESC LIMIT 1;
	IF shielding IS NOT NULL THEN
		RAISE EXCEPTION 'tenant "%" is in privacy mode: only its own owners and admins may do this', shielding
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Principals of tenants above it, resellers included, cannot decide about its data.';
	END IF;
	RETURN me;
END
$$;
COMMENT ON FUNCTION custos.require_data_admin(text) IS
	'Authorisation of retention policies, legal holds and erasure: require_admin(), and privacy mode shields a tenant from those above it.';

CREATE FUNCTION custos.set_retention_policy(tenant text, retention_days integer,
											anonymize_days integer DEFAULT NULL) RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me text := custos.require_data_admin($1);
	b record;
	old custos.retention_policy;
	result jsonb;
BEGIN
	SELECT * INTO b FROM custos.retention_bounds();
	IF $2 IS NULL OR $2 NOT BETWEEN b.min_days AND b.max_days THEN
		RAISE EXCEPTION 'retention period % days is outside the allowed range', coalesce($2::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = pg_catalog.format('This installation allows between %s and %s days.', b.min_days, b.max_days),
				  HINT = 'The DBA sets the range with custos.retention_min_days and custos.retention_max_days.';
	END IF;
	IF $3 IS NOT NULL AND $3 NOT BETWEEN 1 AND $2 THEN
		RAISE EXCEPTION 'anonymisation period % days must lie between 1 and the retention period (% days)', $3, $2
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to keep events readable until they are deleted.';
	END IF;
	SELECT * INTO old FROM custos.retention_policy p WHERE p.tenant = $1 FOR UPDATE;
	INSERT INTO custos.retention_policy AS p (tenant, retention_days, anonymize_days, updated_by)
	VALUES ($1, $2, $3, coalesce(me, custos.caller_role()))
	ON CONFLICT ON CONSTRAINT retention_policy_pkey DO UPDATE
	   SET retention_days = EXCLUDED.retention_days, anonymize_days = EXCLUDED.anonymize_days,
		   updated_at = pg_catalog.clock_timestamp(), updated_by = EXCLUDED.updated_by;
	result := pg_catalog.jsonb_build_object('retention_days', $2, 'anonymize_days', $3);
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', $1, 'category', 'privacy', 'action', 'UPDATE',
		'resource_type', 'RETENTION_POLICY', 'resource_id', $1,
		'previous_state', CASE WHEN old.tenant IS NULL
							   THEN pg_catalog.jsonb_build_object('retention_days', b.default_days, 'anonymize_days', NULL, 'default', true)
							   ELSE pg_catalog.jsonb_build_object('retention_days', old.retention_days, 'anonymize_days', old.anonymize_days) END,
		'new_state', result));
	RETURN result || pg_catalog.jsonb_build_object('tenant', $1);
END
$$;
COMMENT ON FUNCTION custos.set_retention_policy(text, integer, integer) IS
	'Sets a tenant''s retention and anonymisation periods (days) within the DBA''s bounds; owners and admins only; audited.';

-- ---------------------------------------------------------------------------
-- Legal holds
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.place_legal_hold(tenant text, subject text DEFAULT NULL, reason text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me text := custos.require_data_admin($1);
	id bigint;
BEGIN
	IF $3 IS NULL OR pg_catalog.btrim($3) = '' OR pg_catalog.octet_length($3) > 1024 THEN
		RAISE EXCEPTION 'a legal hold needs a reason of 1 to 1024 bytes'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Name the matter, e.g. a case or ticket number.';
	END IF;
	IF $2 IS NOT NULL AND pg_catalog.btrim($2) = '' THEN
		RAISE EXCEPTION 'the subject of a legal hold must not be empty'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL to hold the whole tenant.';
	END IF;
	INSERT INTO custos.legal_hold (tenant, actor_ref, subject_ref, reason, placed_by)
	VALUES ($1,
			CASE WHEN $2 IS NOT NULL THEN custos.scope_ref($1, 'actor', $2) END,
			CASE WHEN $2 IS NOT NULL THEN custos.scope_ref($1, 'subject', $2) END,
			$3, coalesce(me, custos.caller_role()))
	RETURNING hold_id INTO id;
	-- the subject goes into the event's personal fields: erasing it later
	-- (once the hold is lifted) erases it from this record too
	PERFORM custos.log(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
		'tenant', $1, 'category', 'privacy', 'action', 'HOLD',
		'resource_type', 'LEGAL_HOLD', 'resource_id', id::text, 'subject', $2,
		'new_state', pg_catalog.jsonb_build_object('hold_id', id,
			'scope', CASE WHEN $2 IS NULL THEN 'tenant' ELSE 'subject' END, 'reason', $3))));
	RETURN id;
END
$$;
COMMENT ON FUNCTION custos.place_legal_hold(text, text, text) IS
	'Puts a tenant, or one data subject within it, on legal hold: its events are neither deleted, anonymised nor erased until lifted.  Audited.';

CREATE FUNCTION custos.lift_legal_hold(hold_id bigint, reason text DEFAULT NULL) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	h custos.legal_hold;
	me text;
BEGIN
	SELECT * INTO h FROM custos.legal_hold l WHERE l.hold_id = $1 FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'legal hold % does not exist', $1 USING ERRCODE = 'no_data_found';
	END IF;
	me := custos.require_data_admin(h.tenant);
	IF h.lifted_at IS NOT NULL THEN
		RAISE EXCEPTION 'legal hold % was already lifted', $1
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = pg_catalog.format('Lifted at %s by %s.', h.lifted_at, h.lifted_by);
	END IF;
	UPDATE custos.legal_hold l
	   SET lifted_at = pg_catalog.clock_timestamp(), lifted_by = coalesce(me, custos.caller_role()), lift_reason = $2
	 WHERE l.hold_id = $1;
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', h.tenant, 'category', 'privacy', 'action', 'RELEASE',
		'resource_type', 'LEGAL_HOLD', 'resource_id', $1::text,
		'previous_state', pg_catalog.jsonb_build_object('hold_id', $1, 'placed_at', h.placed_at),
		'new_state', pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('hold_id', $1, 'reason', $2))));
END
$$;
COMMENT ON FUNCTION custos.lift_legal_hold(bigint, text) IS 'Lifts a legal hold; audited.';

-- a security barrier, as custos.retention_policies: hold reasons are confidential
CREATE VIEW custos.legal_holds WITH (security_barrier) AS
SELECT h.hold_id, h.tenant,
	   CASE WHEN h.subject_ref IS NULL THEN 'tenant' ELSE 'subject' END AS scope,
	   h.reason, h.placed_by, h.placed_at, h.lifted_by, h.lifted_at, h.lift_reason
  FROM custos.legal_hold h
 WHERE h.tenant = ANY (custos.visible_tenants())
	OR custos.caller_is_superuser();
COMMENT ON VIEW custos.legal_holds IS 'Legal holds of the tenants the caller may audit; held subjects are not named.';

-- Keys of held subjects of a tenant: an event by or about a held subject
-- (one of whose keys is here) is kept by retention.
CREATE FUNCTION custos.held_keys(tenant text) RETURNS bigint[]
	LANGUAGE sql STABLE AS $$
	SELECT coalesce(pg_catalog.array_agg(k.key_id), '{}')
	  FROM custos.legal_hold h
	  JOIN custos.data_key k
		ON k.tenant = h.tenant
	   AND ((k.scope = 'actor' AND k.scope_ref = h.actor_ref) OR (k.scope = 'subject' AND k.scope_ref = h.subject_ref))
	 WHERE h.tenant = $1 AND h.lifted_at IS NULL AND h.subject_ref IS NOT NULL
$$;

-- Keys no job may destroy: those of held subjects, and the other key of
-- every event by or about one (Hal's key of the day he viewed held Gina's
-- record: without it that kept event could not be read).  Scans the
-- tenant's events only while a subject hold exists.
CREATE FUNCTION custos.kept_keys(tenant text) RETURNS bigint[]
	LANGUAGE sql STABLE AS $$
	WITH held AS (SELECT pg_catalog.unnest(custos.held_keys($1)) AS key_id)
	SELECT coalesce(pg_catalog.array_agg(DISTINCT x.key_id), '{}')
	  FROM (SELECT key_id FROM held
			UNION
			SELECT e.actor_key_id FROM custos.event_log e
			 WHERE e.tenant = $1 AND e.subject_key_id IN (SELECT key_id FROM held)
			UNION
			SELECT e.subject_key_id FROM custos.event_log e
			 WHERE e.tenant = $1 AND e.actor_key_id IN (SELECT key_id FROM held)
			   AND e.subject_key_id IS NOT NULL) x
$$;

CREATE FUNCTION custos.tenant_on_hold(tenant text) RETURNS boolean
	LANGUAGE sql STABLE AS $$
	SELECT EXISTS (SELECT 1 FROM custos.legal_hold h
					WHERE h.tenant = $1 AND h.lifted_at IS NULL AND h.subject_ref IS NULL)
$$;

-- ---------------------------------------------------------------------------
-- Erasure (GDPR Art. 17)
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.erase_subject(tenant text, subject text, reason text DEFAULT NULL) RETURNS jsonb
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me text := custos.require_data_admin($1);
	ar bytea;
	sr bytea;
	hold custos.legal_hold;
	ids bigint[];
	first_day integer;
	last_day integer;
	destroyed bigint;
	kept bigint[];
	spared bigint;
	result jsonb;
BEGIN
	IF $2 IS NULL OR $2 = '' THEN
		RAISE EXCEPTION 'the subject to erase must be named' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	ar := custos.scope_ref($1, 'actor', $2);
	sr := custos.scope_ref($1, 'subject', $2);
	SELECT * INTO hold FROM custos.legal_hold h
	 WHERE h.tenant = $1 AND h.lifted_at IS NULL AND (h.subject_ref IS NULL OR h.subject_ref = sr)
	 ORDER BY h.hold_id LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'cannot erase: the % is under legal hold %',
				CASE WHEN hold.subject_ref IS NULL THEN 'tenant' ELSE 'subject' END, hold.hold_id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = pg_catalog.format('Hold placed at %s by %s: %s', hold.placed_at, hold.placed_by, hold.reason),
				  HINT = 'Art. 17(3)(e) GDPR: data needed for legal claims is exempt from erasure.  Lift the hold first if it no longer applies.';
	END IF;
	-- keys that events by or about another, held, subject need are exempt
	-- (Art. 17(3)(e)) and stay until that hold is lifted
	kept := custos.kept_keys($1);
	SELECT pg_catalog.array_agg(k.key_id) FILTER (WHERE k.key_id <> ALL (kept)),
		   pg_catalog.count(*) FILTER (WHERE k.key_id = ANY (kept) AND k.key IS NOT NULL),
		   pg_catalog.min(k.period), pg_catalog.max(k.period)
	  INTO ids, spared, first_day, last_day
	  FROM custos.data_key k
	 WHERE k.tenant = $1
	   AND ((k.scope = 'actor' AND k.scope_ref = ar) OR (k.scope = 'subject' AND k.scope_ref = sr));
	destroyed := coalesce(custos.destroy_keys(coalesce(ids, '{}'), 'erasure', true), 0);
	result := pg_catalog.jsonb_build_object(
		'tenant', $1, 'keys_destroyed', destroyed, 'keys_kept_for_holds', spared,
		'first_day', DATE '1970-01-01' + first_day,
		'last_day', DATE '1970-01-01' + last_day,
		-- a keyed reference: lets the controller show later that this
		-- subject was erased, names nobody
		'subject_ref', pg_catalog.encode(pg_catalog.substr(sr, 1, 8), 'hex'));
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', $1, 'category', 'privacy', 'action', 'ERASE', 'resource_type', 'SUBJECT',
		'new_state', result || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('reason', $3))));
	RETURN result;
END
$$;
COMMENT ON FUNCTION custos.erase_subject(text, text, text) IS
	'GDPR Art. 17: destroys every key of the subject (as actor and as subject) in the tenant, so every personal field by or about them is unrecoverable; audited without the erased data.';

-- ---------------------------------------------------------------------------
-- Jobs
--
-- Procedures, so that each batch commits: no lock or snapshot is held for
-- the length of a run, and a run killed half-way keeps what it did; the
-- next run continues (a batch only ever looks at what is still there).
-- Each batch transaction first takes a transaction-level advisory lock per
-- job and tenant, so two runs of one job on one tenant take turns.
-- ---------------------------------------------------------------------------

-- Who may run the jobs: anyone granted EXECUTE (nobody but superusers by
-- default); running them "as of" another time is for superusers only.
CREATE FUNCTION custos.job_clock(as_of timestamptz) RETURNS timestamptz
	LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF $1 IS NULL THEN
		RETURN pg_catalog.clock_timestamp();
	END IF;
	IF NOT custos.caller_is_superuser() THEN
		RAISE EXCEPTION 'only a superuser may run custos jobs as of another time'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'as_of moves the clock the retention and anonymisation periods count from.';
	END IF;
	RETURN $1;
END
$$;
COMMENT ON FUNCTION custos.job_clock(timestamptz) IS
	'The time a job run counts periods from: now, or (superusers only, for tests and backfills) as_of.';

CREATE FUNCTION custos.job_lock(job text, tenant text) RETURNS void
	LANGUAGE sql VOLATILE AS $$
	SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('custos.' || $1), pg_catalog.hashtext($2))
$$;

-- Between two batches: the pause the DBA asked for (custos.job_batch_pause).
CREATE FUNCTION custos.job_pause() RETURNS void
	LANGUAGE sql VOLATILE AS $$
	-- pg_settings has the value in the GUC's unit (ms), without the unit
	SELECT pg_catalog.pg_sleep(s.setting::integer / 1000.0)
	  FROM pg_catalog.pg_settings s
	 WHERE s.name = 'custos.job_batch_pause' AND s.setting <> '0'
$$;

CREATE FUNCTION custos.job_begin(job text, tenant text, as_of timestamptz, cutoff timestamptz) RETURNS bigint
	LANGUAGE sql VOLATILE AS $$
	INSERT INTO custos.job_run (job, tenant, as_of, cutoff, backend_start)
	VALUES ($1, $2, $3, $4, (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a
							  WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()))
	RETURNING run_id
$$;

-- Finish a run: its outcome, and a "system" audit event of the tenant with
-- what it did (counts, time range, duration).
CREATE FUNCTION custos.job_finish(run bigint, outcome text) RETURNS void
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	r custos.job_run;
BEGIN
	UPDATE custos.job_run j SET finished_at = pg_catalog.clock_timestamp(), outcome = $2
	 WHERE j.run_id = $1 RETURNING * INTO r;
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', r.tenant, 'actor', 'system', 'category', 'system',
		'action', CASE r.job WHEN 'retention' THEN 'PURGE' ELSE 'SHRED' END,
		'resource_type', 'JOB', 'resource_id', r.job || ':' || r.run_id,
		'outcome', 'success',
		'new_state', pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
			'job', r.job, 'run_id', r.run_id, 'outcome', r.outcome,
			'as_of', r.as_of, 'cutoff', r.cutoff,
			'events_deleted', r.events_deleted, 'events_held', r.events_held,
			'keys_destroyed', r.keys_destroyed, 'blocks_dropped', r.blocks_dropped,
			'oldest_cut', r.oldest_cut, 'newest_cut', r.newest_cut,
			'duration_ms', pg_catalog.round(pg_catalog.date_part('epoch', r.finished_at - r.started_at)::numeric * 1000, 1)))));
END
$$;

-- Destroy a tenant's live keys of days before cut_day, except held ones,
-- batch by batch (committing in between); returns how many.
CREATE PROCEDURE custos.destroy_old_keys(tenant text, cut_day integer, reason text, batch_size integer,
										 run bigint, INOUT destroyed bigint DEFAULT 0)
	LANGUAGE plpgsql AS $$
DECLARE
	ids bigint[];
	n bigint;
	kept bigint[] := custos.kept_keys(tenant);
BEGIN
	destroyed := 0;
	LOOP
		PERFORM custos.job_lock(reason, tenant);	-- the reasons are the jobs' names
		SELECT pg_catalog.array_agg(k.key_id) INTO ids
		  FROM (SELECT k.key_id FROM custos.data_key k
				 WHERE k.tenant = destroy_old_keys.tenant AND k.key IS NOT NULL AND k.period < cut_day
				   AND k.key_id <> ALL (kept)
				 LIMIT batch_size) k;
		EXIT WHEN ids IS NULL;
		n := custos.destroy_keys(ids, reason, false);
		destroyed := destroyed + n;
		UPDATE custos.job_run j SET keys_destroyed = j.keys_destroyed + n WHERE j.run_id = run;
		COMMIT;
		PERFORM custos.job_pause();
	END LOOP;
END
$$;

CREATE PROCEDURE custos.anonymize(tenant text DEFAULT NULL, as_of timestamptz DEFAULT NULL,
								  batch_size integer DEFAULT 10000)
	LANGUAGE plpgsql AS $$
DECLARE
	clock timestamptz := custos.job_clock(as_of);
	tenants text[];
	days integer[];
	i integer;
	run bigint;
	cutoff timestamptz;
	n bigint;
BEGIN
	IF batch_size IS NULL OR batch_size < 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT pg_catalog.array_agg(p.tenant ORDER BY p.tenant), pg_catalog.array_agg(p.anonymize_days ORDER BY p.tenant)
	  INTO tenants, days
	  FROM custos.retention_policies p
	 WHERE p.anonymize_days IS NOT NULL AND (anonymize.tenant IS NULL OR p.tenant = anonymize.tenant);
	FOR i IN 1 .. coalesce(pg_catalog.array_length(tenants, 1), 0) LOOP
		cutoff := clock - pg_catalog.make_interval(days => days[i]);
		run := custos.job_begin('anonymization', tenants[i], clock, cutoff);
		COMMIT;
		IF custos.tenant_on_hold(tenants[i]) THEN
			PERFORM custos.job_finish(run, 'held');
		ELSE
			CALL custos.destroy_old_keys(tenants[i], custos.day_of(cutoff), 'anonymization', batch_size, run, n);
			PERFORM custos.job_finish(run, 'ok');
		END IF;
		COMMIT;
	END LOOP;
END
$$;
COMMENT ON PROCEDURE custos.anonymize(text, timestamptz, integer) IS
	'Anonymises events older than each tenant''s anonymisation period by destroying their data keys; held events excepted.  Batches commit; rerunnable.';

CREATE PROCEDURE custos.apply_retention(tenant text DEFAULT NULL, as_of timestamptz DEFAULT NULL,
										batch_size integer DEFAULT 10000)
	LANGUAGE plpgsql AS $$
DECLARE
	clock timestamptz := custos.job_clock(as_of);
	tenants text[];
	days integer[];
	i integer;
	run bigint;
	cutoff timestamptz;
	after bigint;
	b record;
	n bigint;
BEGIN
	IF batch_size IS NULL OR batch_size < 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT pg_catalog.array_agg(p.tenant ORDER BY p.tenant), pg_catalog.array_agg(p.retention_days ORDER BY p.tenant)
	  INTO tenants, days
	  FROM custos.retention_policies p
	 WHERE apply_retention.tenant IS NULL OR p.tenant = apply_retention.tenant;
	FOR i IN 1 .. coalesce(pg_catalog.array_length(tenants, 1), 0) LOOP
		cutoff := clock - pg_catalog.make_interval(days => days[i]);
		run := custos.job_begin('retention', tenants[i], clock, cutoff);
		COMMIT;
		IF custos.tenant_on_hold(tenants[i]) THEN
			PERFORM custos.job_finish(run, 'held');
			COMMIT;
			CONTINUE;
		END IF;
		after := 0;
		LOOP
			PERFORM custos.job_lock('retention', tenants[i]);
			SELECT * INTO b FROM custos.retention_batch(tenants[i], cutoff, batch_size, after,
														 custos.held_keys(tenants[i]), run);
			UPDATE custos.job_run j
			   SET events_deleted = j.events_deleted + b.deleted, events_held = j.events_held + b.held,
				   oldest_cut = LEAST(j.oldest_cut, b.oldest), newest_cut = GREATEST(j.newest_cut, b.newest),
				   resume_after = b.last_id
			 WHERE j.run_id = run;
			COMMIT;
			after := b.last_id;
			EXIT WHEN b.done;
			PERFORM custos.job_pause();
		END LOOP;
		-- the keys of days wholly before the cutoff encrypted only events
		-- that are gone now (or held, whose keys are kept)
		CALL custos.destroy_old_keys(tenants[i], custos.day_of(cutoff), 'retention', batch_size, run, n);
		PERFORM custos.job_lock('retention', tenants[i]);
		UPDATE custos.job_run j SET blocks_dropped = custos.retention_compact(tenants[i]) WHERE j.run_id = run;
		PERFORM custos.job_finish(run, 'ok');
		COMMIT;
	END LOOP;
END
$$;
COMMENT ON PROCEDURE custos.apply_retention(text, timestamptz, integer) IS
	'Deletes sealed events recorded before each tenant''s retention period, held events excepted, and destroys the keys of the days cut; the chain keeps verifying.  Batches commit; rerunnable.';

CREATE PROCEDURE custos.run_jobs(as_of timestamptz DEFAULT NULL)
	LANGUAGE plpgsql AS $$
BEGIN
	CALL custos.anonymize(as_of => as_of);
	CALL custos.apply_retention(as_of => as_of);
END
$$;
COMMENT ON PROCEDURE custos.run_jobs(timestamptz) IS 'Anonymisation, then retention, for every tenant: what pg_cron runs nightly.';

CREATE VIEW custos.job_status AS
SELECT p.tenant,
	   j.job,
	   r.run_id AS last_run_id,
	   r.started_at AS last_started_at,
	   r.finished_at AS last_finished_at,
	   CASE
		   WHEN r.run_id IS NULL THEN 'never'
		   WHEN r.outcome = 'running' AND NOT EXISTS (
				SELECT 1 FROM pg_catalog.pg_stat_activity a
				 WHERE a.pid = r.pid AND a.backend_start IS NOT DISTINCT FROM r.backend_start)
		   THEN 'interrupted'
		   ELSE r.outcome
	   END AS last_outcome,
	   r.finished_at - r.started_at AS last_duration,
	   r.events_deleted,
	   r.keys_destroyed,
	   CASE j.job
		   WHEN 'retention' THEN
			   -- the events left in the windows of blocks sealed before the
			   -- cutoff: an index range scan over the expired prefix only, so
			   -- cheap while the jobs keep up
			   (SELECT pg_catalog.count(*) FROM custos.event_log e
				 WHERE e.tenant = p.tenant
				   AND e.id < (SELECT pg_catalog.max(b.id_hi) FROM custos.block b
								WHERE b.tenant = p.tenant
								  AND b.sealed_at < pg_catalog.now() - pg_catalog.make_interval(days => p.retention_days)))
		   ELSE
			   (SELECT pg_catalog.count(*) FROM custos.data_key k
				 WHERE k.tenant = p.tenant AND k.key IS NOT NULL AND p.anonymize_days IS NOT NULL
				   AND k.period < custos.day_of(pg_catalog.now() - pg_catalog.make_interval(days => p.anonymize_days)))
	   END AS backlog
  FROM custos.retention_policies p
 CROSS JOIN (VALUES ('anonymization'), ('retention')) j(job)
  LEFT JOIN LATERAL (SELECT * FROM custos.job_run x
					  WHERE x.tenant = p.tenant AND x.job = j.job
					  ORDER BY x.run_id DESC LIMIT 1) r ON true;
COMMENT ON VIEW custos.job_status IS
	'Per tenant and job: the last run, its outcome (never, running, interrupted, ok, held), what it did, and the backlog (events or keys past their period now).';
COMMENT ON COLUMN custos.job_status.backlog IS
	'retention: events in blocks sealed before the retention period (held ones included); anonymization: live keys of days past the anonymisation period.';

-- ---------------------------------------------------------------------------
-- pg_cron
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.schedule_jobs(schedule text DEFAULT '17 3 * * *') RETURNS bigint
	LANGUAGE plpgsql AS $$
DECLARE
	job bigint;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
		RAISE NOTICE 'pg_cron is not installed in database "%": the custos jobs are not scheduled', pg_catalog.current_database()
			USING DETAIL = 'Retention and anonymisation run only when called: CALL custos.run_jobs();',
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, CREATE EXTENSION pg_cron, and call custos.schedule_jobs() again.';
		RETURN NULL;
	END IF;
	-- pg_cron 1.4 replaces a job of the same name and user: rescheduling is idempotent
	EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
		USING 'custos-jobs', schedule, 'CALL custos.run_jobs()';
	RETURN job;
END
$$;
COMMENT ON FUNCTION custos.schedule_jobs(text) IS
	'Registers CALL custos.run_jobs() in pg_cron (default nightly at 03:17 GMT) as job "custos-jobs"; a notice and NULL when pg_cron is absent.';

CREATE FUNCTION custos.unschedule_jobs() RETURNS boolean
	LANGUAGE plpgsql AS $$
DECLARE
	done boolean;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT cron.unschedule($1)' INTO done USING 'custos-jobs';
	RETURN done;
END
$$;
COMMENT ON FUNCTION custos.unschedule_jobs() IS 'Removes the "custos-jobs" job from pg_cron.';

-- ---------------------------------------------------------------------------
-- custos.events: an event by an erased actor reads "erased", not
-- "anonymised" (both keys of an erased subject are destroyed; the reason
-- tells them apart).  Otherwise as in 0.2.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE VIEW custos.events WITH (security_invoker = true) AS
SELECT
	e.id,
	e.tenant,
	e.occurred_at,
	e.recorded_at,
	coalesce(custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'actor'),
			 ak.pseudonym) AS actor,
	e.actor_type,
	custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'actor_name') AS actor_name,
	(custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'source_ip'))::inet AS source_ip,
	custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'user_agent') AS user_agent,
	e.category,
	e.action,
	e.resource_type,
	e.resource_id,
	e.resource_name,
	e.target_level,
	e.target_name,
	custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'subject') AS subject,
	custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'description') AS description,
	e.outcome,
	custos.personal_json(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'previous_state') AS previous_state,
	custos.personal_json(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'new_state') AS new_state,
	custos.personal_json(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'metadata') AS metadata,
	e.request_id,
	e.access,
	-- the block whose window covers the id: the first ending above it (one
	-- probe of block_tenant_id_hi), if it also starts at or below it
	(SELECT CASE WHEN b.id_lo OPERATOR(pg_catalog.<=) e.id
				 THEN b.first_seq OPERATOR(pg_catalog.+) pg_catalog.array_position(b.event_ids, e.id) OPERATOR(pg_catalog.-) 1
			END
	   FROM custos.block b
	  WHERE b.tenant OPERATOR(pg_catalog.=) e.tenant
		AND b.id_hi OPERATOR(pg_catalog.>) e.id
	  ORDER BY b.id_hi LIMIT 1) AS seq,
	(SELECT CASE WHEN b.id_lo OPERATOR(pg_catalog.<=) e.id THEN b.block_no END
	   FROM custos.block b
	  WHERE b.tenant OPERATOR(pg_catalog.=) e.tenant
		AND b.id_hi OPERATOR(pg_catalog.>) e.id
	  ORDER BY b.id_hi LIMIT 1) AS block_no,
	e.id OPERATOR(pg_catalog.<) coalesce((SELECT s.watermark FROM custos.sealer_state s), 1) AS sealed,
	CASE
		WHEN ak.key_id IS NULL THEN 'hidden'
		WHEN ak.key IS NULL AND ak.shred_reason OPERATOR(pg_catalog.=) 'erasure' THEN 'erased'
		WHEN ak.key IS NULL THEN 'anonymised'
		WHEN e.subject_key_id IS NOT NULL AND sk.key_id IS NULL THEN 'hidden'
		WHEN e.subject_key_id IS NOT NULL AND sk.key IS NULL AND sk.shred_reason OPERATOR(pg_catalog.=) 'erasure' THEN 'erased'
		WHEN e.subject_key_id IS NOT NULL AND sk.key IS NULL THEN 'anonymised'
		-- zeroed in place by a destruction that was interrupted (retention.c)
		WHEN ak.key OPERATOR(pg_catalog.=) '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
		  OR sk.key OPERATOR(pg_catalog.=) '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
		THEN 'anonymised'
		ELSE 'clear'
	END AS personal_data
FROM custos.event_log e
LEFT JOIN custos.data_key ak ON ak.key_id OPERATOR(pg_catalog.=) e.actor_key_id
LEFT JOIN custos.data_key sk ON sk.key_id OPERATOR(pg_catalog.=) e.subject_key_id;
COMMENT ON COLUMN custos.events.personal_data IS
	'clear; anonymised (actor key destroyed by anonymisation or retention); erased (a key destroyed by custos.erase_subject()); hidden (not visible to this caller, e.g. privacy mode).';

-- ---------------------------------------------------------------------------
-- Privileges.  New functions are executable by PUBLIC by default: take that
-- back, then grant what checks its callers itself.
-- ---------------------------------------------------------------------------
REVOKE ALL ON custos.retention_policy, custos.legal_hold, custos.retention_cut, custos.job_run FROM PUBLIC;
REVOKE ALL ON FUNCTION custos.require_data_admin(text), custos.scope_ref(text, text, text), custos.destroy_keys(bigint[], text, boolean),
	custos.retention_batch(text, timestamptz, integer, bigint, bigint[], bigint), custos.retention_compact(text),
	custos.day_of(timestamptz), custos.retention_bounds(),
	custos.set_retention_policy(text, integer, integer),
	custos.place_legal_hold(text, text, text), custos.lift_legal_hold(bigint, text),
	custos.held_keys(text), custos.kept_keys(text), custos.tenant_on_hold(text), custos.erase_subject(text, text, text),
	custos.job_clock(timestamptz), custos.job_lock(text, text), custos.job_pause(), custos.job_begin(text, text, timestamptz, timestamptz),
	custos.job_finish(bigint, text), custos.schedule_jobs(text), custos.unschedule_jobs()
	FROM PUBLIC;
REVOKE ALL ON PROCEDURE custos.destroy_old_keys(text, integer, text, integer, bigint, bigint),
	custos.anonymize(text, timestamptz, integer), custos.apply_retention(text, timestamptz, integer),
	custos.run_jobs(timestamptz)
	FROM PUBLIC;
REVOKE ALL ON custos.job_status FROM PUBLIC;
-- whether the caller is a superuser: the views and job_clock() ask it as the
-- caller (0.2 kept it to definer functions; it tells nothing pg_roles does not)
GRANT EXECUTE ON FUNCTION custos.caller_is_superuser() TO PUBLIC;
-- the administration functions check their callers (require_admin)
GRANT EXECUTE ON FUNCTION custos.set_retention_policy(text, integer, integer),
	custos.place_legal_hold(text, text, text), custos.lift_legal_hold(bigint, text),
	custos.erase_subject(text, text, text), custos.day_of(timestamptz), custos.retention_bounds()
	TO PUBLIC;
-- the views filter by the caller's audit rights
GRANT SELECT ON custos.retention_policies, custos.legal_holds TO PUBLIC;
