-- retention_random: a randomized run of appends, seals, legal holds,
-- erasures, policy changes, anonymisation and retention runs "as of" random
-- times, from a fixed seed.  A shadow model, computed here from the policy
-- rules alone (recorded_at against the cutoff, id order, sealing, holds,
-- day keys), says after every step which events must remain and how each
-- must read; the checks compare custos against it and verify every chain.
-- Only counts of mismatches (all 0) and a few booleans are printed, so the
-- output does not depend on ids, times or how many tests ran before.
--
-- The model of keys: one key per (tenant, scope actor|subject, value, UTC
-- day) at a time; a destroyed key is never used again, the next event of
-- that scope and day gets a fresh one ("generation").  A job destroys the
-- live keys of days before its cut day except the kept ones: every key of a
-- held subject, and the other key of every remaining event by or about one.
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
SELECT setseed(0.20261123);

SELECT custos.create_tenant(t, NULL, 'retention_random') FROM unnest(ARRAY['rnd-a', 'rnd-b', 'rnd-c']) t;
SELECT custos.set_retention_policy('rnd-a', 30, 7) IS NOT NULL AS a,
	   custos.set_retention_policy('rnd-b', 10) IS NOT NULL AS b,
	   custos.set_retention_policy('rnd-c', 20, 20) IS NOT NULL AS c;

-- ---------------------------------------------------------------------------
-- the shadow model
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE sh_policy (tenant text PRIMARY KEY, retention_days int NOT NULL, anonymize_days int);
INSERT INTO sh_policy VALUES ('rnd-a', 30, 7), ('rnd-b', 10, NULL), ('rnd-c', 20, 20);
CREATE TEMP TABLE sh_key (kid serial PRIMARY KEY, tenant text, scope text, value text, day int,
						  live boolean NOT NULL DEFAULT true, reason text);
CREATE TEMP TABLE sh_event (id bigint PRIMARY KEY, tenant text, recorded_at timestamptz,
							actor text, subject text, description text,
							a_kid int, s_kid int, deleted boolean NOT NULL DEFAULT false);
CREATE TEMP TABLE sh_hold (hold_id bigint PRIMARY KEY, tenant text, subject text, live boolean NOT NULL DEFAULT true);
CREATE TEMP TABLE sh_state (sealed_upto bigint, as_of timestamptz, expect_deleted bigint, expect_held bigint,
							expect_keys bigint, expect_outcome text);
INSERT INTO sh_state VALUES (0, NULL, NULL, NULL, NULL, NULL);
CREATE TEMP TABLE sh_fail (step int, kind text, what text, n bigint);
CREATE TEMP TABLE sh_stats (what text PRIMARY KEY, n bigint NOT NULL DEFAULT 0);

-- a UTC day, computed here rather than by custos.day_of()
CREATE FUNCTION pg_temp.utc_day(ts timestamptz) RETURNS int LANGUAGE sql IMMUTABLE AS $$
	SELECT floor(extract(epoch FROM ts) / 86400)::int
$$;

CREATE FUNCTION pg_temp.bump(what text, n bigint) RETURNS void LANGUAGE sql AS $$
	INSERT INTO sh_stats AS s VALUES (what, n) ON CONFLICT (what) DO UPDATE SET n = s.n + EXCLUDED.n
$$;

-- the live key of a scope and day, a fresh generation if there is none
CREATE FUNCTION pg_temp.sh_keyof(t text, sc text, v text, d int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
	k int;
BEGIN
	IF v IS NULL THEN
		RETURN NULL;
	END IF;
	SELECT kid INTO k FROM sh_key WHERE tenant = t AND scope = sc AND value = v AND day = d AND live;
	IF NOT FOUND THEN
		INSERT INTO sh_key (tenant, scope, value, day) VALUES (t, sc, v, d) RETURNING kid INTO k;
	END IF;
	RETURN k;
END
$$;

CREATE FUNCTION pg_temp.sh_add(i bigint, t text, rec timestamptz, a text, s text, d text) RETURNS void
	LANGUAGE sql AS $$
	INSERT INTO sh_event (id, tenant, recorded_at, actor, subject, description, a_kid, s_kid)
	VALUES (i, t, rec, a, s, d, pg_temp.sh_keyof(t, 'actor', a, pg_temp.utc_day(rec)),
			pg_temp.sh_keyof(t, 'subject', s, pg_temp.utc_day(rec)))
$$;

-- events custos itself recorded (policy, hold, erasure and job events):
-- taken into the model as they read right after they were written
CREATE FUNCTION pg_temp.sync() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	e record;
BEGIN
	FOR e IN SELECT v.id, v.tenant, v.recorded_at, v.actor, v.subject, v.description, v.personal_data
			   FROM custos.events v
			  WHERE v.tenant LIKE 'rnd-%' AND v.id > (SELECT coalesce(max(id), 0) FROM sh_event)
			  ORDER BY v.id LOOP
		PERFORM pg_temp.sh_add(e.id, e.tenant, e.recorded_at, e.actor, e.subject, e.description);
	END LOOP;
END
$$;

-- subjects of a tenant under a live subject hold; whether the tenant is held
CREATE FUNCTION pg_temp.held_subjects(t text) RETURNS text[] LANGUAGE sql AS $$
	SELECT coalesce(array_agg(DISTINCT subject), '{}') FROM sh_hold WHERE tenant = t AND live AND subject IS NOT NULL
$$;
CREATE FUNCTION pg_temp.tenant_held(t text) RETURNS boolean LANGUAGE sql AS $$
	SELECT EXISTS (SELECT 1 FROM sh_hold WHERE tenant = t AND live AND subject IS NULL)
$$;

-- keys no job may destroy
CREATE FUNCTION pg_temp.kept(t text) RETURNS int[] LANGUAGE sql AS $$
	WITH h AS (SELECT unnest(pg_temp.held_subjects(t)) AS s)
	SELECT coalesce(array_agg(DISTINCT kid), '{}') FROM (
		SELECT kid FROM sh_key WHERE tenant = t AND value IN (SELECT s FROM h)
		UNION ALL
		SELECT a_kid FROM sh_event WHERE tenant = t AND NOT deleted AND subject IN (SELECT s FROM h)
		UNION ALL
		SELECT s_kid FROM sh_event WHERE tenant = t AND NOT deleted AND actor IN (SELECT s FROM h) AND s_kid IS NOT NULL) x
$$;

CREATE FUNCTION pg_temp.sh_destroy(t text, before_day int, why text) RETURNS bigint LANGUAGE sql AS $$
	WITH d AS (UPDATE sh_key SET live = false, reason = why
				WHERE tenant = t AND live AND day < before_day AND kid <> ALL (pg_temp.kept(t)) RETURNING 1)
	SELECT count(*) FROM d
$$;

-- ---------------------------------------------------------------------------
-- the plan: every random choice is drawn here, up front
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE plan AS
SELECT step,
	   CASE WHEN step = 1 THEN 'append'
			WHEN rk < 0.33 THEN 'append'
			WHEN rk < 0.47 THEN 'seal'
			WHEN rk < 0.63 THEN 'retention'
			WHEN rk < 0.73 THEN 'anonymize'
			WHEN rk < 0.79 THEN 'hold_subject'
			WHEN rk < 0.81 THEN 'hold_tenant'
			WHEN rk < 0.88 THEN 'lift'
			WHEN rk < 0.96 THEN 'erase'
			ELSE 'policy' END AS kind,
	   'rnd-' || chr(97 + floor(rt * 3)::int) AS tenant,
	   (ARRAY['alice@example.com', 'bob@example.com', 'erin@example.com', 'gina@example.com',
			  'hal@example.com', 'room-4'])[1 + floor(rs * 6)::int] AS who,
	   1 + floor(r1 * 8)::int AS n,
	   r1, r2
  FROM (SELECT s AS step, random() AS rk, random() AS rt, random() AS rs, random() AS r1, random() AS r2
		  FROM generate_series(1, 170) s) x;
-- the events of the append steps
CREATE TEMP TABLE plan_event AS
SELECT p.step, k,
	   'rnd-' || chr(97 + floor(random() * 3)::int) AS tenant,
	   (ARRAY['alice@example.com', 'bob@example.com', 'carol@example.com', 'erin@example.com',
			  'hal@example.com'])[1 + floor(random() * 5)::int] AS actor,
	   (ARRAY['erin@example.com', 'frank@example.com', 'gina@example.com', 'room-4', NULL,
			  NULL])[1 + floor(random() * 6)::int] AS subject
  FROM plan p, generate_series(1, p.n) k
 WHERE p.kind = 'append'
 ORDER BY p.step, k;
-- the end: holds lifted, everything sealed, then far beyond every period
INSERT INTO plan (step, kind, tenant) VALUES
	(171, 'lift_all', NULL), (172, 'seal', NULL), (173, 'append', NULL), (174, 'seal', NULL),
	(175, 'anonymize_all', 'rnd-a'), (176, 'anonymize_all', 'rnd-c'),
	(177, 'retention_all', 'rnd-a'), (178, 'retention_all', 'rnd-b'), (179, 'retention_all', 'rnd-c');
INSERT INTO plan_event VALUES
	(173, 1, 'rnd-a', 'alice@example.com', 'frank@example.com'),
	(173, 2, 'rnd-b', 'bob@example.com', NULL),
	(173, 3, 'rnd-c', 'erin@example.com', 'gina@example.com');
SELECT kind, count(*) AS steps FROM plan GROUP BY kind ORDER BY kind;
SELECT count(*) AS planned_events FROM plan_event;

-- ---------------------------------------------------------------------------
-- the steps; each keeps the model in step with what it asked custos to do
-- ---------------------------------------------------------------------------
CREATE FUNCTION pg_temp.append(st int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	evs jsonb;
	e record;
BEGIN
	SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
			   'tenant', tenant, 'action', 'ACT', 'actor', actor, 'subject', subject,
			   'description', format('step %s event %s', step, k))) ORDER BY k)
	  INTO evs FROM plan_event WHERE step = st;
	FOR e IN SELECT l.id, p.tenant, p.actor, p.subject, format('step %s event %s', p.step, p.k) AS d
			   FROM custos.log_batch(evs) WITH ORDINALITY l(id, k)
			   JOIN plan_event p ON p.step = st AND p.k = l.k
			  ORDER BY l.k LOOP
		PERFORM pg_temp.sh_add(e.id, e.tenant, (SELECT recorded_at FROM custos.event_log WHERE id = e.id),
							   e.actor, e.subject, e.d);
	END LOOP;
END
$$;

CREATE FUNCTION pg_temp.seal() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM custos.seal();
	-- in this one session, every event there is is sealed now
	UPDATE sh_state SET sealed_upto = (SELECT max(id) FROM custos.event_log);
END
$$;

CREATE FUNCTION pg_temp.hold(st int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	p plan;
	h bigint;
BEGIN
	SELECT * INTO p FROM plan WHERE step = st;
	h := custos.place_legal_hold(p.tenant, CASE p.kind WHEN 'hold_subject' THEN p.who END, 'step ' || st);
	INSERT INTO sh_hold VALUES (h, p.tenant, CASE p.kind WHEN 'hold_subject' THEN p.who END);
	PERFORM pg_temp.bump('holds placed', 1);
END
$$;

CREATE FUNCTION pg_temp.lift(st int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	p plan;
	h bigint;
BEGIN
	SELECT * INTO p FROM plan WHERE step = st;
	SELECT hold_id INTO h FROM sh_hold WHERE live AND (p.kind = 'lift_all' OR tenant = p.tenant)
	 ORDER BY hold_id OFFSET floor(coalesce(p.r1, 0) * (SELECT count(*) FROM sh_hold
														WHERE live AND (p.kind = 'lift_all' OR tenant = p.tenant)))
	 LIMIT 1;
	WHILE h IS NOT NULL LOOP
		PERFORM custos.lift_legal_hold(h, 'step ' || st);
		UPDATE sh_hold SET live = false WHERE hold_id = h;
		h := NULL;
		IF p.kind = 'lift_all' THEN
			SELECT hold_id INTO h FROM sh_hold WHERE live ORDER BY hold_id LIMIT 1;
		END IF;
	END LOOP;
END
$$;

CREATE FUNCTION pg_temp.erase(st int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	p plan;
	refuse boolean;
	refused boolean := false;
	n bigint;
	got bigint;
BEGIN
	SELECT * INTO p FROM plan WHERE step = st;
	refuse := pg_temp.tenant_held(p.tenant) OR p.who = ANY (pg_temp.held_subjects(p.tenant));
	BEGIN
		got := (custos.erase_subject(p.tenant, p.who, 'step ' || st)->>'keys_destroyed')::bigint;
	EXCEPTION WHEN object_not_in_prerequisite_state THEN
		refused := true;
	END;
	IF refused IS DISTINCT FROM refuse THEN
		INSERT INTO sh_fail VALUES (st, p.kind, format('erasure refused: %s, expected %s', refused, refuse), 1);
	END IF;
	IF refused THEN
		PERFORM pg_temp.bump('erasures refused for a hold', 1);
		RETURN;
	END IF;
	WITH d AS (UPDATE sh_key SET live = false, reason = 'erasure'
				WHERE tenant = p.tenant AND live AND value = p.who AND kid <> ALL (pg_temp.kept(p.tenant))
			   RETURNING 1)
	SELECT count(*) INTO n FROM d;
	IF got IS DISTINCT FROM n THEN
		INSERT INTO sh_fail VALUES (st, p.kind, format('erasure destroyed %s keys, expected %s', got, n), 1);
	END IF;
	-- keys destroyed before (anonymisation, retention) count as erased now:
	-- their pseudonym is forgotten too
	UPDATE sh_key SET reason = 'erasure' WHERE tenant = p.tenant AND NOT live AND value = p.who;
	PERFORM pg_temp.bump('erasures', 1);
END
$$;

CREATE FUNCTION pg_temp.policy(st int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	p plan;
	r int;
	a int;
BEGIN
	SELECT * INTO p FROM plan WHERE step = st;
	r := (ARRAY[5, 10, 30])[1 + floor(p.r1 * 3)::int];
	a := CASE WHEN p.r2 < 0.3 THEN NULL ELSE 1 + floor(p.r2 * r)::int END;
	PERFORM custos.set_retention_policy(p.tenant, r, a);
	UPDATE sh_policy SET retention_days = r, anonymize_days = a WHERE tenant = p.tenant;
END
$$;

-- The as_of of a job step, chosen now from the plan and the model: for
-- retention, mostly a cutoff at (or 1 microsecond after) a remaining
-- event's recorded_at; else a whole number of days from now.  Remembered
-- for the model.
CREATE FUNCTION pg_temp.as_of(st int) RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
	p plan;
	pol sh_policy;
	rec timestamptz;
	result timestamptz;
BEGIN
	SELECT * INTO p FROM plan WHERE step = st;
	SELECT * INTO pol FROM sh_policy WHERE tenant = p.tenant;
	IF p.kind = 'retention' AND p.r1 < 0.7 THEN
		SELECT recorded_at INTO rec FROM sh_event WHERE tenant = p.tenant AND NOT deleted
		 ORDER BY id OFFSET floor(p.r2 * (SELECT count(*) FROM sh_event WHERE tenant = p.tenant AND NOT deleted)) LIMIT 1;
		result := coalesce(rec, now()) + CASE WHEN p.r1 < 0.35 THEN interval '0' ELSE interval '1 microsecond' END
				  + make_interval(days => pol.retention_days);
	ELSIF p.kind = 'retention' THEN
		-- from before the test (nothing) to beyond everything recorded
		result := now() + make_interval(days => pol.retention_days - 1 + floor(p.r2 * 3)::int);
	ELSIF p.kind = 'anonymize' THEN
		result := now() + make_interval(days => coalesce(pol.anonymize_days, 1) - 1 + floor(p.r2 * 3)::int);
	ELSE
		-- anonymize_all, retention_all
		result := now() + make_interval(days => pol.retention_days + 2);
	END IF;
	UPDATE sh_state SET as_of = result;
	RETURN result;
END
$$;

-- What a job run must have done, applied to the model before the run's own
-- event is synced.
CREATE FUNCTION pg_temp.model_job(st int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	p plan;
	pol sh_policy;
	s sh_state;
	cutoff timestamptz;
	held text[];
	e record;
	n_deleted bigint := 0;
	kept_events bigint := 0;
	keys bigint := 0;
BEGIN
	SELECT * INTO p FROM plan WHERE step = st;
	SELECT * INTO pol FROM sh_policy WHERE tenant = p.tenant;
	SELECT * INTO s FROM sh_state;
	IF p.kind IN ('anonymize', 'anonymize_all') AND pol.anonymize_days IS NULL THEN
		UPDATE sh_state SET expect_outcome = 'none';
		RETURN;
	END IF;
	IF pg_temp.tenant_held(p.tenant) THEN
		UPDATE sh_state SET expect_outcome = 'held', expect_deleted = 0, expect_held = 0, expect_keys = 0;
		RETURN;
	END IF;
	IF p.kind IN ('anonymize', 'anonymize_all') THEN
		keys := pg_temp.sh_destroy(p.tenant, pg_temp.utc_day(s.as_of - make_interval(days => pol.anonymize_days)),
								   'anonymization');
	ELSE
		cutoff := s.as_of - make_interval(days => pol.retention_days);
		held := pg_temp.held_subjects(p.tenant);
		-- sealed events in id order, up to the first one within the period
		FOR e IN SELECT * FROM sh_event WHERE tenant = p.tenant AND NOT deleted AND id <= s.sealed_upto ORDER BY id LOOP
			EXIT WHEN e.recorded_at >= cutoff;
			IF e.actor = ANY (held) OR e.subject = ANY (held) THEN
				kept_events := kept_events + 1;
			ELSE
				UPDATE sh_event SET deleted = true WHERE id = e.id;
				n_deleted := n_deleted + 1;
			END IF;
		END LOOP;
		keys := pg_temp.sh_destroy(p.tenant, pg_temp.utc_day(cutoff), 'retention');
	END IF;
	UPDATE sh_state SET expect_outcome = 'ok', expect_deleted = n_deleted, expect_held = kept_events, expect_keys = keys;
	PERFORM pg_temp.bump('events deleted', n_deleted);
	PERFORM pg_temp.bump('held events kept by a retention run', kept_events);
END
$$;

-- ---------------------------------------------------------------------------
-- the checks, after every step
-- ---------------------------------------------------------------------------
CREATE FUNCTION pg_temp.fail(st int, what text, n bigint) RETURNS void LANGUAGE sql AS $$
	INSERT INTO sh_fail SELECT st, (SELECT kind FROM plan WHERE step = st), what, n WHERE n <> 0
$$;

CREATE FUNCTION pg_temp.check(st int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	p plan;
	s sh_state;
	j custos.job_run;
BEGIN
	SELECT * INTO p FROM plan WHERE step = st;
	SELECT * INTO s FROM sh_state;
	-- the job run as recorded
	IF p.kind IN ('retention', 'retention_all', 'anonymize', 'anonymize_all') THEN
		SELECT * INTO j FROM custos.job_run WHERE tenant = p.tenant
		   AND job = CASE WHEN p.kind LIKE 'retention%' THEN 'retention' ELSE 'anonymization' END
		 ORDER BY run_id DESC LIMIT 1;
		IF s.expect_outcome = 'none' THEN
			PERFORM pg_temp.fail(st, 'an anonymisation run without a period', (j.as_of = s.as_of)::int);
		ELSE
			PERFORM pg_temp.fail(st, format('run outcome %s, expected %s', j.outcome, s.expect_outcome),
								 (j.as_of IS DISTINCT FROM s.as_of OR j.outcome IS DISTINCT FROM s.expect_outcome)::int);
			PERFORM pg_temp.fail(st, format('run deleted %s events, expected %s', j.events_deleted, s.expect_deleted),
								 j.events_deleted - s.expect_deleted);
			PERFORM pg_temp.fail(st, format('run kept %s held events, expected %s', j.events_held, s.expect_held),
								 j.events_held - s.expect_held);
			PERFORM pg_temp.fail(st, format('run destroyed %s keys, expected %s', j.keys_destroyed, s.expect_keys),
								 j.keys_destroyed - s.expect_keys);
		END IF;
		UPDATE sh_state SET expect_outcome = NULL, expect_deleted = NULL, expect_held = NULL, expect_keys = NULL;
	END IF;
	PERFORM pg_temp.sync();
	-- every chain verifies
	INSERT INTO sh_fail SELECT st, p.kind, format('verify: %s %s at seq %s: %s', v.tenant, v.failure, v.failed_seq, v.detail), 1
	  FROM unnest(ARRAY['rnd-a', 'rnd-b', 'rnd-c']) t, custos.verify(t) v WHERE NOT v.ok;
	-- exactly the events that must remain are there
	PERFORM pg_temp.fail(st, 'events missing', (SELECT count(*) FROM sh_event e WHERE NOT e.deleted
												  AND NOT EXISTS (SELECT 1 FROM custos.event_log l WHERE l.id = e.id)));
	PERFORM pg_temp.fail(st, 'events that should be gone', (SELECT count(*) FROM custos.event_log l
		WHERE l.tenant LIKE 'rnd-%' AND NOT EXISTS (SELECT 1 FROM sh_event e WHERE e.id = l.id AND NOT e.deleted)));
	-- one model key is one custos key, a fresh generation a fresh key
	PERFORM pg_temp.fail(st, 'model keys mapped to several keys', (SELECT count(*) FROM (
		SELECT kid FROM (SELECT e.a_kid AS kid, l.actor_key_id AS key_id FROM sh_event e JOIN custos.event_log l USING (id)
						 UNION SELECT e.s_kid, l.subject_key_id FROM sh_event e JOIN custos.event_log l USING (id)
						  WHERE e.s_kid IS NOT NULL) m GROUP BY kid HAVING count(DISTINCT key_id) > 1) x));
	PERFORM pg_temp.fail(st, 'keys mapped to several model keys', (SELECT count(*) FROM (
		SELECT key_id FROM (SELECT e.a_kid AS kid, l.actor_key_id AS key_id FROM sh_event e JOIN custos.event_log l USING (id)
							UNION SELECT e.s_kid, l.subject_key_id FROM sh_event e JOIN custos.event_log l USING (id)
							 WHERE e.s_kid IS NOT NULL) m GROUP BY key_id HAVING count(DISTINCT kid) > 1) x));
	-- a model key is live exactly when custos still has its key bytes
	PERFORM pg_temp.fail(st, 'key liveness differs', (SELECT count(*) FROM (
		SELECT DISTINCT k.kid, k.live, d.key IS NOT NULL AS has_key
		  FROM sh_event e JOIN custos.event_log l USING (id)
		  JOIN sh_key k ON k.kid = e.a_kid JOIN custos.data_key d ON d.key_id = l.actor_key_id
		UNION
		SELECT DISTINCT k.kid, k.live, d.key IS NOT NULL
		  FROM sh_event e JOIN custos.event_log l USING (id)
		  JOIN sh_key k ON k.kid = e.s_kid JOIN custos.data_key d ON d.key_id = l.subject_key_id) x
		WHERE live <> has_key));
	-- how each remaining event reads
	INSERT INTO sh_fail
	SELECT st, p.kind, format('personal_data %s, expected %s (actor key %s, subject key %s by %s)',
							  got, expected, alive, slive, sreason), count(*)
	  FROM (SELECT v.personal_data AS got, ak.live AS alive, sk.live AS slive, sk.reason AS sreason,
				   CASE WHEN NOT ak.live THEN CASE ak.reason WHEN 'erasure' THEN 'erased' ELSE 'anonymised' END
						WHEN NOT sk.live THEN CASE sk.reason WHEN 'erasure' THEN 'erased' ELSE 'anonymised' END
						ELSE 'clear' END AS expected
			  FROM sh_event e JOIN custos.events v USING (id)
			  JOIN sh_key ak ON ak.kid = e.a_kid LEFT JOIN sh_key sk ON sk.kid = e.s_kid) x
	 WHERE got IS DISTINCT FROM expected
	 GROUP BY 1, 2, 3;
	PERFORM pg_temp.fail(st, 'clear event reads wrong', (SELECT count(*)
		FROM sh_event e JOIN custos.events v USING (id)
		JOIN sh_key ak ON ak.kid = e.a_kid LEFT JOIN sh_key sk ON sk.kid = e.s_kid
		WHERE ak.live AND coalesce(sk.live, true)
		  AND (v.actor IS DISTINCT FROM e.actor OR v.subject IS DISTINCT FROM e.subject
			   OR v.description IS DISTINCT FROM e.description)));
	PERFORM pg_temp.fail(st, 'unreadable event shows personal data', (SELECT count(*)
		FROM sh_event e JOIN custos.events v USING (id)
		JOIN sh_key ak ON ak.kid = e.a_kid LEFT JOIN sh_key sk ON sk.kid = e.s_kid
		WHERE NOT (ak.live AND coalesce(sk.live, true))
		  AND (v.subject IS NOT NULL OR v.description IS NOT NULL OR v.actor_name IS NOT NULL
			   OR v.source_ip IS NOT NULL OR v.user_agent IS NOT NULL OR v.new_state IS NOT NULL
			   OR v.previous_state IS NOT NULL OR v.metadata IS NOT NULL
			   -- the actor: its pseudonym, or nothing once erased
			   OR CASE WHEN NOT ak.live AND ak.reason = 'erasure' THEN v.actor IS NOT NULL
					   ELSE v.actor IS NULL OR v.actor !~ '^anon-[0-9a-f]{12}$' END)));
	-- pseudonyms: one per actor and tenant, different actors different ones
	PERFORM pg_temp.fail(st, 'unstable pseudonyms', (SELECT count(*) FROM (
		SELECT e.tenant, e.actor FROM sh_event e JOIN custos.events v USING (id)
		 WHERE v.actor LIKE 'anon-%' GROUP BY 1, 2 HAVING count(DISTINCT v.actor) > 1) x));
	PERFORM pg_temp.fail(st, 'shared pseudonyms', (SELECT count(*) FROM (
		SELECT e.tenant, v.actor FROM sh_event e JOIN custos.events v USING (id)
		 WHERE v.actor LIKE 'anon-%' GROUP BY 1, 2 HAVING count(DISTINCT e.actor) > 1) x));
END
$$;

-- one step: its action(s), then (for jobs) the model, then the checks
CREATE FUNCTION pg_temp.step_sql(p plan) RETURNS text[] LANGUAGE sql AS $$
	SELECT CASE p.kind
		WHEN 'append' THEN ARRAY[format('SELECT pg_temp.append(%s)', p.step)]
		WHEN 'seal' THEN ARRAY['SELECT pg_temp.seal()']
		WHEN 'hold_subject' THEN ARRAY[format('SELECT pg_temp.hold(%s)', p.step)]
		WHEN 'hold_tenant' THEN ARRAY[format('SELECT pg_temp.hold(%s)', p.step)]
		WHEN 'lift' THEN ARRAY[format('SELECT pg_temp.lift(%s)', p.step)]
		WHEN 'lift_all' THEN ARRAY[format('SELECT pg_temp.lift(%s)', p.step)]
		WHEN 'erase' THEN ARRAY[format('SELECT pg_temp.erase(%s)', p.step)]
		WHEN 'policy' THEN ARRAY[format('SELECT pg_temp.policy(%s)', p.step)]
		WHEN 'retention' THEN ARRAY[
			format('CALL custos.apply_retention(tenant => %L, as_of => pg_temp.as_of(%s), batch_size => %s)',
				   p.tenant, p.step, 1 + floor(p.r2 * 97)::int % 4),
			format('SELECT pg_temp.model_job(%s)', p.step)]
		WHEN 'retention_all' THEN ARRAY[
			format('CALL custos.apply_retention(tenant => %L, as_of => pg_temp.as_of(%s), batch_size => 3)', p.tenant, p.step),
			format('SELECT pg_temp.model_job(%s)', p.step)]
		ELSE ARRAY[
			format('CALL custos.anonymize(tenant => %L, as_of => pg_temp.as_of(%s), batch_size => 2)', p.tenant, p.step),
			format('SELECT pg_temp.model_job(%s)', p.step)]
		END || format('SELECT pg_temp.check(%s)', p.step)
$$;

-- ---------------------------------------------------------------------------
-- run it
-- ---------------------------------------------------------------------------
SELECT pg_temp.sync();
\o /dev/null
SELECT s FROM plan p, unnest(pg_temp.step_sql(p)) WITH ORDINALITY u(s, o) ORDER BY p.step, o \gexec
\o

-- ---------------------------------------------------------------------------
-- results: no mismatch at any step
-- ---------------------------------------------------------------------------
SELECT count(*) AS mismatches FROM sh_fail;
SELECT step, kind, what, n FROM sh_fail ORDER BY step, what LIMIT 20;
-- and the run did exercise what it claims to
SELECT what, n > 0 AS happened FROM sh_stats ORDER BY what;
SELECT count(*) FILTER (WHERE deleted) > 0 AS some_deleted,
	   count(*) FILTER (WHERE NOT deleted) > 0 AS some_remain
  FROM sh_event;
SELECT count(*) AS job_runs_unfinished FROM custos.job_run WHERE tenant LIKE 'rnd-%' AND outcome = 'running';
-- what states the events passed through (sampled after the last step)
SELECT bool_or(NOT k.live AND k.reason = 'anonymization') AS anonymised_keys,
	   bool_or(NOT k.live AND k.reason = 'erasure') AS erased_keys,
	   bool_or(NOT k.live AND k.reason = 'retention') AS retention_keys
  FROM sh_key k;
-- finally, far beyond every period with nothing held: only the events the
-- last runs wrote (unsealed) remain, every chain verifies from its checkpoint
SELECT t AS tenant, v.ok, v.pending > 0 AS has_pending,
	   (SELECT count(*) FROM custos.event_log l WHERE l.tenant = t AND l.id < (SELECT watermark FROM custos.sealer_state)) AS sealed_left,
	   EXISTS (SELECT 1 FROM custos.checkpoint c WHERE c.tenant = t) AS has_checkpoint
  FROM unnest(ARRAY['rnd-a', 'rnd-b', 'rnd-c']) t, custos.verify(t) v ORDER BY 1;

-- ---------------------------------------------------------------------------
-- Two cases the random run found, pinned down.
-- 1. A second run cuts, in one range, events around those an earlier run
--    cut: the cut ranges overlap, and the chain must still verify.
-- ---------------------------------------------------------------------------
SELECT custos.create_tenant('rnd-overlap') IS NOT NULL AS created;
SELECT count(*) AS logged FROM custos.log_batch($$[
 {"tenant": "rnd-overlap", "action": "A", "actor": "gina"}, {"tenant": "rnd-overlap", "action": "A", "actor": "xavier"},
 {"tenant": "rnd-overlap", "action": "A", "actor": "gina"}, {"tenant": "rnd-overlap", "action": "A", "actor": "xavier"},
 {"tenant": "rnd-overlap", "action": "A", "actor": "gina"}, {"tenant": "rnd-overlap", "action": "A", "actor": "xavier"},
 {"tenant": "rnd-overlap", "action": "A", "actor": "gina"}, {"tenant": "rnd-overlap", "action": "A", "actor": "xavier"}]$$);
SELECT custos.place_legal_hold('rnd-overlap', 'gina', 'overlap') AS overlap_hold \gset
SELECT custos.seal() > 0 AS sealed;
-- Xavier's four events go, one range each between Gina's held ones
CALL custos.apply_retention(tenant => 'rnd-overlap', as_of => now() + interval '200 days');
SELECT custos.lift_legal_hold(:overlap_hold);
-- now Gina's: one range from her first to her last event, over Xavier's
CALL custos.apply_retention(tenant => 'rnd-overlap', as_of => now() + interval '200 days');
SELECT count(*) AS actions_a_left FROM custos.event_log WHERE tenant = 'rnd-overlap' AND action = 'A';
SELECT tenant, ok, failure FROM custos.verify('rnd-overlap');

-- ---------------------------------------------------------------------------
-- 2. Anonymisation destroys a subject key whose event's actor key a hold
--    keeps (Hal viewed held Gina that day): that event is anonymised, not
--    erased; nobody asked for an erasure.
-- ---------------------------------------------------------------------------
SELECT custos.create_tenant('rnd-label') IS NOT NULL AS created;
SELECT custos.set_retention_policy('rnd-label', 30, 7) IS NOT NULL AS policy;
SELECT count(*) AS logged FROM custos.log_batch($$[
 {"tenant": "rnd-label", "action": "VIEW", "actor": "hal", "subject": "gina"},
 {"tenant": "rnd-label", "action": "VIEW", "actor": "hal", "subject": "frank"}]$$);
SELECT custos.place_legal_hold('rnd-label', 'gina', 'label') > 0 AS held;
CALL custos.anonymize(tenant => 'rnd-label', as_of => now() + interval '9 days');
SELECT scope, shred_reason FROM custos.data_key WHERE tenant = 'rnd-label' AND key IS NULL ORDER BY scope;
SELECT action, regexp_replace(actor, '^anon-[0-9a-f]{12}$', 'anon-<12 hex>') AS actor, subject, personal_data
  FROM custos.events WHERE tenant = 'rnd-label' AND action = 'VIEW' ORDER BY id;
