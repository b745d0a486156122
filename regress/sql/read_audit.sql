-- read_audit: every read of a protected table or of the audit log by a
-- principal becomes a READ event of the tenant read (after custos.seal()
-- drains the queue): the relation, rows examined and returned, the
-- principal as actor, its token as access, and the stated purpose.  Reads
-- by every route count; a read that rolls back is recorded all the same;
-- superusers without a principal are not recorded (RLS does not apply to
-- them).  Each read below states a purpose that names it.
\set VERBOSITY terse
-- the shared helpers: labels for random ids, try(), attempt()
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixtures :abs_srcdir '/fixtures/labels.psql'
\i :fixtures
-- the superuser's name depends on who runs the tests
INSERT INTO labels VALUES ('role:' || current_user, 'role:superuser');

SELECT current_user AS superuser_name \gset
CREATE ROLE regress_ra_client LOGIN;
CREATE ROLE regress_ra_mapped;
CREATE SCHEMA regress_ra;
GRANT USAGE ON SCHEMA regress_ra TO PUBLIC;
SELECT custos.seal() >= 0 AS flushed;

SELECT custos.create_tenant('ra-rs', NULL, 'Reseller');
SELECT custos.create_tenant('ra-c1', 'ra-rs', 'Customer 1');
SELECT custos.create_tenant('ra-c2', 'ra-rs', 'Customer 2');
SELECT custos.create_tenant('ra-other', NULL, 'Unrelated');
SELECT custos.create_principal('ra-rs', 'Rita Reseller', 'user', 'admin') AS rs_admin \gset
SELECT custos.create_principal('ra-c1', 'Owen Owner', 'user', 'owner') AS c1_owner \gset
SELECT custos.create_principal('ra-c1', 'Wendy Works', 'user', 'member') AS c1_wc \gset
SELECT custos.create_principal('ra-c1', 'Camera app', 'app', 'member') AS c1_app \gset
SELECT custos.create_principal('ra-c1', 'Report job', 'app', 'member', 'regress_ra_mapped') AS c1_job \gset
INSERT INTO labels VALUES (:'rs_admin', 'rs_admin'), (:'c1_owner', 'c1_owner'), (:'c1_wc', 'c1_wc'),
	(:'c1_app', 'c1_app'), (:'c1_job', 'c1_job');
SELECT token_id AS rs_tid, token AS rs_tok FROM custos.issue_token(:'rs_admin') \gset
SELECT custos.grant_right('ra-c1', :'c1_wc', 'audit.read') > 0 AS works_council;
-- the customer's owner, with a first token from the superuser, issues its
-- own token, switches privacy mode on with it (which revokes the first
-- token and everything issued through it: the superuser knew it), then
-- issues its principals' tokens
SELECT token AS c1_first_tok FROM custos.issue_token(:'c1_owner', label => 'first') \gset
BEGIN;
SELECT custos.authenticate(:'c1_first_tok') IS NOT NULL AS c1_owner;
SELECT token_id AS c1_tid, token AS c1_tok FROM custos.issue_token(:'c1_owner') \gset
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c1_tok') IS NOT NULL AS c1_owner;
SELECT custos.set_privacy_mode('ra-c1', true);
SELECT token_id AS wc_tid, token AS wc_tok FROM custos.issue_token(:'c1_wc') \gset
SELECT token_id AS app_tid, token AS app_tok FROM custos.issue_token(:'c1_app', 'app') \gset
COMMIT;
INSERT INTO labels VALUES (:'rs_tid', 'tok(rs_admin)'), (:'c1_tid', 'tok(c1_owner)'), (:'wc_tid', 'tok(c1_wc)'),
	(:'app_tid', 'tok(c1_app)');
SELECT count(*) AS seeded FROM custos.log_batch($$[
	{"tenant": "ra-rs", "action": "SEED", "actor": "u-1"},
	{"tenant": "ra-c1", "action": "SEED", "actor": "u-2", "subject": "cam-1"},
	{"tenant": "ra-c2", "action": "SEED", "actor": "u-3"}
]$$);

CREATE TABLE regress_ra.images (id int PRIMARY KEY, tenant text NOT NULL, secret text);
INSERT INTO regress_ra.images VALUES (1, 'ra-rs', 'r1'), (2, 'ra-c1', 'c1a'), (3, 'ra-c1', 'c1b'),
	(4, 'ra-c2', 'c2a'), (5, 'ra-c2', 'c2b'), (6, 'ra-c2', 'c2c'), (7, 'ra-other', 'o1');
CREATE TABLE regress_ra.bookings (tenant text NOT NULL, day date NOT NULL) PARTITION BY RANGE (day);
CREATE TABLE regress_ra.bookings_2025 PARTITION OF regress_ra.bookings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
SELECT custos.protect('regress_ra.images', 'tenant', 'image data');
SELECT custos.protect('regress_ra.bookings', 'tenant', 'bookings');
CREATE TABLE regress_ra.bookings_2026 PARTITION OF regress_ra.bookings FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO regress_ra.bookings VALUES ('ra-c1', '2025-02-01'), ('ra-c2', '2025-02-02'),
	('ra-c1', '2026-02-01'), ('ra-c2', '2026-02-02'), ('ra-c2', '2026-02-03');
CREATE VIEW regress_ra.images_invoker WITH (security_invoker = true) AS SELECT * FROM regress_ra.images;
CREATE FUNCTION regress_ra.images_fn() RETURNS SETOF regress_ra.images LANGUAGE sql STABLE
	AS 'SELECT * FROM regress_ra.images';
CREATE FUNCTION regress_ra.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001
	AS $$BEGIN RAISE NOTICE 'leak: %', $1; RETURN true; END$$;
-- a query nested in another (PL/pgSQL is never inlined)
CREATE FUNCTION regress_ra.count_rs() RETURNS bigint LANGUAGE plpgsql STABLE
	AS $$BEGIN RETURN (SELECT count(*) FROM regress_ra.images WHERE tenant = 'ra-rs'); END$$;
GRANT SELECT ON ALL TABLES IN SCHEMA regress_ra TO PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regress_ra TO PUBLIC;
SELECT custos.seal() > 0 AS sealed;

-- ---------------------------------------------------------------------------
-- Reads by the reseller (the customer in privacy mode: its rows are not
-- read, so not recorded), each in its own transaction
-- ---------------------------------------------------------------------------
SET ROLE regress_ra_client;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('01 table');
SELECT count(*) AS rows FROM regress_ra.images;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('02 security_invoker view');
SELECT id FROM regress_ra.images_invoker WHERE tenant = 'ra-c2' ORDER BY id;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('03 function');
SELECT count(*) AS rows FROM regress_ra.images_fn();
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('04 copy query');
COPY (SELECT id FROM regress_ra.images ORDER BY id) TO STDOUT;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('05 copy table');
COPY regress_ra.images (id) TO STDOUT;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('06 leaky function');
SELECT count(*) AS rows FROM regress_ra.images WHERE regress_ra.leak(secret) AND tenant = 'ra-rs';
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('07 partition');
SELECT count(*) AS rows FROM regress_ra.bookings_2026;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('08 partitioned parent');
SELECT count(*) AS rows FROM regress_ra.bookings;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('09 cursor');
DECLARE c CURSOR FOR SELECT id FROM regress_ra.images WHERE tenant = 'ra-c2' ORDER BY id;
FETCH 2 FROM c;
CLOSE c;
COMMIT;
-- the audit log itself, through the view: the customer's events are read
-- too (their personal fields are hidden), so its log records the reading
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('10 audit log');
SELECT tenant, personal_data FROM custos.events WHERE action = 'SEED' ORDER BY tenant;
COMMIT;

-- ---------------------------------------------------------------------------
-- Reads by the customer's principals
-- ---------------------------------------------------------------------------
-- a read that rolls back is recorded all the same
BEGIN;
SELECT custos.authenticate(:'c1_tok') IS NOT NULL AS c1_owner;
SELECT custos.set_purpose('11 rolled back');
SELECT id FROM regress_ra.images ORDER BY id;
ROLLBACK;
-- the works council states why it reads the audit log
BEGIN;
SELECT custos.authenticate(:'wc_tok') IS NOT NULL AS c1_wc;
SELECT custos.set_purpose('works council audit Q3');
SELECT count(*) > 0 AS read_the_log FROM custos.events WHERE tenant = 'ra-c1';
COMMIT;
-- an app token, and a mapped role
BEGIN;
SELECT custos.authenticate(:'app_tok') IS NOT NULL AS c1_app;
SELECT custos.set_purpose('12 app token');
SELECT count(*) AS rows FROM regress_ra.images;
COMMIT;
RESET ROLE;
SET ROLE regress_ra_mapped;
BEGIN;
SELECT custos.set_purpose('13 mapped role');
SELECT count(*) AS rows FROM regress_ra.images;
COMMIT;
-- without a stated purpose
SELECT count(*) AS rows FROM regress_ra.images WHERE id = 2;
RESET ROLE;
-- queries of one caller, relation, tenant and purpose queued together
-- become one event that counts them
SET ROLE regress_ra_client;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('15 two queries');
SELECT count(*) AS rows FROM regress_ra.images WHERE tenant = 'ra-rs';
SELECT id FROM regress_ra.images WHERE tenant = 'ra-rs';
COMMIT;
RESET ROLE;
-- the superuser, without a principal, is not recorded
BEGIN;
SELECT custos.set_purpose('14 superuser');
SELECT count(*) AS rows FROM regress_ra.images;
SELECT count(*) > 0 AS read_the_log FROM custos.events;
COMMIT;

-- ---------------------------------------------------------------------------
-- The READ events
-- ---------------------------------------------------------------------------
SELECT custos.seal() > 0 AS sealed;
SELECT coalesce(e.metadata ->> 'purpose', '(none)') AS purpose, e.tenant, e.resource_type, e.resource_id,
       pg_temp.l(e.actor) AS actor, e.actor_type, pg_temp.l(e.access) AS access,
       (e.metadata ->> 'queries')::int AS queries,
       (e.metadata ->> 'rows_examined')::int AS examined, (e.metadata ->> 'rows_returned')::int AS returned,
       e.category, e.outcome
  FROM custos.events e
 WHERE e.action = 'READ' AND e.tenant LIKE 'ra-%'
 ORDER BY 1, 2, 4;
-- no READ event anywhere for the superuser's reads, nor for the rows the
-- reseller could not read
SELECT count(*) AS superuser_reads FROM custos.events WHERE action = 'READ' AND metadata ->> 'purpose' = '14 superuser';
SELECT count(*) AS reseller_reads_of_customer FROM custos.events
 WHERE action = 'READ' AND tenant = 'ra-c1' AND resource_type = 'TABLE' AND access = :'rs_tid';
-- the READ events are sealed like any other
SELECT tenant, ok, pending FROM custos.verify() WHERE tenant LIKE 'ra-%' ORDER BY tenant;

-- ---------------------------------------------------------------------------
-- A read after an error that was caught in the same transaction is still
-- recorded
-- ---------------------------------------------------------------------------
SET ROLE regress_ra_client;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('20 after a caught error');
SELECT pg_temp.try('SELECT 1 / g FROM generate_series(0, 1) g') AS caught;
SELECT count(*) AS rows FROM regress_ra.images WHERE tenant = 'ra-rs';
COMMIT;
-- an error and a read in one statement
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('21 in a DO block');
DO $$
DECLARE
	n bigint;
BEGIN
	BEGIN
		PERFORM 1 / g FROM generate_series(0, 1) g;
	EXCEPTION WHEN division_by_zero THEN
		NULL;
	END;
	SELECT count(*) INTO n FROM regress_ra.images WHERE tenant = 'ra-rs';
	RAISE NOTICE 'rows read: %', n;
END
$$;
COMMIT;
RESET ROLE;
-- a fresh session whose first statement fails, then reads
\c - regress_ra_client
\set VERBOSITY terse
SELECT 1 / g FROM generate_series(0, 1) g;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('22 after a failed statement');
SELECT count(*) AS rows FROM regress_ra.images WHERE tenant = 'ra-rs';
COMMIT;
-- rows a query delivered before it failed were read: the failure, and the
-- rollback after it, must not take the record with them (nor its reader)
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('24 failed after returning rows');
DECLARE c CURSOR FOR SELECT id, secret, 1 / (5 - id) AS n FROM regress_ra.images WHERE tenant = 'ra-c2' ORDER BY id;
FETCH 1 FROM c;
FETCH 1 FROM c;
ROLLBACK;
-- the same, with the error caught: rolled back to a savepoint ...
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('25 rolled back to a savepoint');
SAVEPOINT s;
DECLARE c CURSOR FOR SELECT id, secret, 1 / (5 - id) AS n FROM regress_ra.images WHERE tenant = 'ra-c2' ORDER BY id;
FETCH 1 FROM c;
FETCH 1 FROM c;
ROLLBACK TO SAVEPOINT s;
COMMIT;
-- ... or in PL/pgSQL
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('26 caught in PL/pgSQL');
DO $$
BEGIN
	PERFORM id, 1 / (5 - id) FROM regress_ra.images WHERE tenant = 'ra-c2' ORDER BY id;
EXCEPTION WHEN division_by_zero THEN
	RAISE NOTICE 'caught';
END
$$;
COMMIT;
-- read in a savepoint that authenticated and was then rolled back: the read
-- stays recorded, and recorded as the principal's
BEGIN;
SAVEPOINT s;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('27 authenticated in a rolled-back savepoint');
DECLARE c CURSOR FOR SELECT id, secret, 1 / (5 - id) AS n FROM regress_ra.images WHERE tenant = 'ra-c2' ORDER BY id;
FETCH 1 FROM c;
FETCH 1 FROM c;
ROLLBACK TO SAVEPOINT s;
SELECT custos.current_principal() AS after_rollback_to_savepoint;
COMMIT;
-- a query nested in another: the reads of both are recorded
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('28 nested query');
SELECT count(*) AS outer_rows, regress_ra.count_rs() AS inner_rows FROM regress_ra.images WHERE tenant = 'ra-c2';
COMMIT;
-- custos.note_read() is a policy marker, not a way to write into other
-- tenants' logs: calling it directly records nothing for a tenant the
-- caller can read neither the audit log nor the data of ("ra-other"); the
-- reseller may read the private customer's audit log, so a marker for it
-- is recorded (as the reseller's)
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('23 forged');
-- (refusing the call outright would do as well)
DO $$
BEGIN
	PERFORM custos.note_read('ra-other', 'custos.event_log'::regclass);
	PERFORM custos.note_read('ra-c1', 'regress_ra.images'::regclass);
EXCEPTION WHEN insufficient_privilege THEN
	NULL;
END
$$;
COMMIT;
\c - :superuser_name
\set VERBOSITY terse
SELECT custos.seal() > 0 AS sealed;
SELECT e.metadata ->> 'purpose' AS purpose, e.tenant, e.resource_id, (e.metadata ->> 'queries')::int AS queries,
       (e.metadata ->> 'rows_examined')::int AS examined, (e.metadata ->> 'rows_returned')::int AS returned,
       e.actor = :'rs_admin' AS actor_is_rs_admin, e.actor_type, e.access = :'rs_tid' AS access_is_rs_token
  FROM custos.events e
 WHERE e.action = 'READ' AND e.metadata ->> 'purpose' ~ '^2[0-8] '
 ORDER BY 1, 2, 3;
-- the metadata of a READ event, times left out
SELECT array_agg(k ORDER BY k) AS metadata_keys
  FROM custos.events e, jsonb_object_keys(e.metadata) k
 WHERE e.action = 'READ' AND e.metadata ->> 'purpose' = '15 two queries';
SELECT bool_and((e.metadata ->> 'first_at')::timestamptz <= (e.metadata ->> 'last_at')::timestamptz
                AND e.occurred_at = (e.metadata ->> 'first_at')::timestamptz) AS times_consistent
  FROM custos.events e
 WHERE e.action = 'READ' AND e.tenant LIKE 'ra-%';

SELECT custos.unprotect('regress_ra.images');
SELECT custos.unprotect('regress_ra.bookings');
SELECT custos.seal() >= 0 AS flushed;
SELECT custos.disable_principal(:'c1_job');
DROP SCHEMA regress_ra CASCADE;
DROP ROLE regress_ra_client, regress_ra_mapped;
