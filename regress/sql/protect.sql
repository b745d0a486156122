-- protect: custos.protect() puts an application table under the tenant and
-- privacy-mode policies.  A reseller whose customer is in privacy mode gets
-- none of the customer's protected rows by any route: the table, a
-- security_invoker view, a view owned by an ordinary role, a function,
-- COPY, a cursor, a leaky function in WHERE; UPDATE/DELETE ... WHERE and
-- RETURNING touch nothing; INSERT for the customer is refused; another
-- permissive policy on the table opens nothing.  Partitions, present and
-- future, are protected with the parent.  unprotect() removes the policies,
-- partitions included, and is audited.  Both are the superuser's.
\set VERBOSITY terse
-- the shared helpers: labels for random ids, try(), attempt()
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixtures :abs_srcdir '/fixtures/labels.psql'
\i :fixtures
-- the superuser's name depends on who runs the tests
INSERT INTO labels VALUES ('role:' || current_user, 'role:superuser');

CREATE ROLE regress_pr_client;
CREATE ROLE regress_pr_viewer;
CREATE SCHEMA regress_pr;
GRANT USAGE ON SCHEMA regress_pr TO PUBLIC;
GRANT CREATE ON SCHEMA regress_pr TO regress_pr_viewer;
SELECT custos.seal() >= 0 AS flushed;

SELECT custos.create_tenant('pr-rs', NULL, 'Reseller');
SELECT custos.create_tenant('pr-c1', 'pr-rs', 'Customer 1');
SELECT custos.create_tenant('pr-c2', 'pr-rs', 'Customer 2');
SELECT custos.create_tenant('pr-other', NULL, 'Unrelated');
SELECT custos.create_principal('pr-rs', 'Rita Reseller', 'user', 'admin') AS rs_admin \gset
SELECT custos.create_principal('pr-c1', 'Owen Owner', 'user', 'owner') AS c1_owner \gset
SELECT custos.create_principal('pr-c1', 'Camera app', 'app', 'member') AS c1_app \gset
SELECT custos.create_principal('pr-other', 'Otto Owner', 'user', 'owner') AS other_owner \gset
INSERT INTO labels VALUES (:'rs_admin', 'rs_admin'), (:'c1_owner', 'c1_owner'), (:'c1_app', 'c1_app'),
	(:'other_owner', 'other_owner');
SELECT token AS rs_tok FROM custos.issue_token(:'rs_admin') \gset
SELECT token AS other_tok FROM custos.issue_token(:'other_owner') \gset
-- the customer's owner issues its own token with a first token from the
-- superuser (switching privacy mode on revokes that one, and whatever was
-- issued through it); its app's token comes after the switch
SELECT token AS c1_first_tok FROM custos.issue_token(:'c1_owner') \gset
BEGIN;
SELECT custos.authenticate(:'c1_first_tok') IS NOT NULL AS c1_owner;
SELECT token AS c1_tok FROM custos.issue_token(:'c1_owner') \gset
COMMIT;

-- an application table of "image data", owned by the DBA
CREATE TABLE regress_pr.images (id int PRIMARY KEY, tenant text NOT NULL, camera text, secret text);
INSERT INTO regress_pr.images VALUES
	(1, 'pr-rs', 'lobby', 'rs-secret'),
	(2, 'pr-c1', 'front door', 'c1-secret-a'),
	(3, 'pr-c1', 'garden', 'c1-secret-b'),
	(4, 'pr-c2', 'shop', 'c2-secret'),
	(5, 'pr-other', 'gate', 'other-secret');
GRANT SELECT, INSERT, UPDATE, DELETE ON regress_pr.images TO PUBLIC;

-- only a superuser protects, and only tables outside custos: protect() is
-- not executable by PUBLIC, and refuses a non-superuser granted EXECUTE
SET ROLE regress_pr_client;
SELECT pg_temp.try($$SELECT custos.protect('regress_pr.images', 'tenant', 'image data')$$) AS by_non_superuser;
RESET ROLE;
GRANT EXECUTE ON FUNCTION custos.protect(regclass, name, text) TO regress_pr_client;
SET ROLE regress_pr_client;
SELECT pg_temp.try($$SELECT custos.protect('regress_pr.images', 'tenant', 'image data')$$) AS granted_non_superuser;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION custos.protect(regclass, name, text) FROM regress_pr_client;
CREATE VIEW regress_pr.not_a_table AS SELECT 1 AS tenant;
SELECT pg_temp.try($$SELECT custos.protect('regress_pr.not_a_table', 'tenant', 'x')$$) AS view;
SELECT pg_temp.try($$SELECT custos.protect('custos.tenant', 'id', 'x')$$) AS custos_table;
SELECT pg_temp.try($$SELECT custos.protect('regress_pr.images', 'owner', 'x')$$) AS unknown_column;
SELECT pg_temp.try($$SELECT custos.protect('regress_pr.images', 'tenant', '')$$) AS no_data_class;
DROP VIEW regress_pr.not_a_table;
SELECT custos.protect('regress_pr.images', 'tenant', 'image data');
-- forced row-level security and an index on the tenant column; custos'
-- conditions are RESTRICTIVE policies, one per command, on top of a
-- permissive custos_allow
SELECT c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = c.oid AND a.attname = 'tenant') AS tenant_indexes
  FROM pg_class c WHERE c.oid = 'regress_pr.images'::regclass;
SELECT p.polname, p.polcmd, p.polpermissive, p.polroles = '{0}' AS to_public,
       pg_get_expr(p.polqual, p.polrelid) LIKE '%custos.note_read(%' AS read_marker
  FROM pg_policy p WHERE p.polrelid = 'regress_pr.images'::regclass ORDER BY p.polname;
SELECT relid, tenant_column, data_class FROM custos.protected_table;

-- the routes a reseller might try
CREATE VIEW regress_pr.images_invoker WITH (security_invoker = true) AS SELECT * FROM regress_pr.images;
CREATE FUNCTION regress_pr.images_fn() RETURNS SETOF regress_pr.images LANGUAGE sql STABLE
	AS 'SELECT * FROM regress_pr.images';
CREATE FUNCTION regress_pr.secret_of(int) RETURNS text LANGUAGE plpgsql STABLE
	AS $$BEGIN RETURN (SELECT secret FROM regress_pr.images WHERE id = $1); END$$;
-- a leaky function: cheap, not leakproof, and it tells what it sees
CREATE FUNCTION regress_pr.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS $$
BEGIN
	RAISE NOTICE 'leak: %', $1;
	RETURN true;
END
$$;
GRANT SELECT ON regress_pr.images_invoker TO PUBLIC;
GRANT EXECUTE ON FUNCTION regress_pr.images_fn(), regress_pr.secret_of(int), regress_pr.leak(text) TO PUBLIC;
GRANT SELECT ON regress_pr.images TO regress_pr_viewer WITH GRANT OPTION;
-- Not a route here, by design of PostgreSQL: a plain view or a SECURITY
-- DEFINER function owned by a superuser (or a BYPASSRLS role) reads without
-- any policy.  Over a protected table, the DBA must create views WITH
-- (security_invoker = true), as above, or own them by an ordinary role.
-- a plain view owned by an ordinary role: it reads with its owner's
-- privileges, but custos' policies still ask who the session is
SET ROLE regress_pr_viewer;
CREATE VIEW regress_pr.images_by_viewer AS SELECT * FROM regress_pr.images;
GRANT SELECT ON regress_pr.images_by_viewer TO PUBLIC;
RESET ROLE;

-- the customer switches privacy mode on
SET ROLE regress_pr_client;
BEGIN;
SELECT custos.authenticate(:'c1_tok') IS NOT NULL AS c1_owner;
SELECT custos.set_privacy_mode('pr-c1', true);
SELECT token AS app_tok FROM custos.issue_token(:'c1_app', 'app') \gset
COMMIT;

-- ---------------------------------------------------------------------------
-- The reseller, by every route: its own and the other customer's rows only
-- ---------------------------------------------------------------------------
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT * FROM regress_pr.images ORDER BY id;
SELECT count(*) AS c1_rows FROM regress_pr.images WHERE tenant = 'pr-c1';
SELECT * FROM regress_pr.images_invoker ORDER BY id;
SELECT * FROM regress_pr.images_by_viewer ORDER BY id;
SELECT * FROM regress_pr.images_fn() ORDER BY id;
SELECT regress_pr.secret_of(2) AS secret_2, regress_pr.secret_of(4) AS secret_4;
COPY regress_pr.images TO STDOUT;
COPY (SELECT id, tenant, secret FROM regress_pr.images ORDER BY id) TO STDOUT;
COPY (SELECT * FROM regress_pr.images_invoker ORDER BY id) TO STDOUT WITH (FORMAT csv);
DECLARE c CURSOR FOR SELECT id, secret FROM regress_pr.images ORDER BY id;
FETCH ALL FROM c;
CLOSE c;
-- the leaky function sees only rows that passed the policy
SELECT id FROM regress_pr.images WHERE regress_pr.leak(secret) ORDER BY id;
SELECT id FROM regress_pr.images WHERE regress_pr.leak(tenant || ':' || secret) AND tenant = 'pr-c1';
SELECT id FROM regress_pr.images_invoker WHERE regress_pr.leak(secret) ORDER BY id;
SELECT id FROM regress_pr.images_by_viewer WHERE regress_pr.leak(secret) ORDER BY id;
-- writes: nothing of the customer's can be found, changed or created
UPDATE regress_pr.images SET camera = camera WHERE secret = 'c1-secret-a' RETURNING *;
UPDATE regress_pr.images SET camera = 'x' WHERE tenant = 'pr-c1' RETURNING secret;
DELETE FROM regress_pr.images WHERE secret LIKE 'c1-%' RETURNING *;
DELETE FROM regress_pr.images WHERE id IN (2, 3);
SELECT pg_temp.try($$INSERT INTO regress_pr.images VALUES (10, 'pr-c1', 'planted', 'x')$$) AS insert_for_customer;
SELECT pg_temp.try($$UPDATE regress_pr.images SET tenant = 'pr-c1' WHERE id = 4$$) AS move_into_customer;
SELECT pg_temp.try($$INSERT INTO regress_pr.images VALUES (11, 'pr-other', 'planted', 'x')$$) AS insert_for_unrelated;
-- statistics of a table under row-level security are not shown either
SELECT count(*) AS stats_rows FROM pg_stats WHERE schemaname = 'regress_pr' AND tablename = 'images';
COMMIT;
RESET ROLE;
-- nothing of the customer's changed
SELECT * FROM regress_pr.images ORDER BY id;

-- the customer's own principals: all of the customer's rows, nothing else
SET ROLE regress_pr_client;
BEGIN;
SELECT custos.authenticate(:'c1_tok') IS NOT NULL AS c1_owner;
SELECT * FROM regress_pr.images ORDER BY id;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'app_tok') IS NOT NULL AS c1_app_token;
SELECT id, tenant FROM regress_pr.images_invoker ORDER BY id;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'other_tok') IS NOT NULL AS other_owner;
SELECT id, tenant FROM regress_pr.images ORDER BY id;
COMMIT;
-- no principal: no rows, no writes
SELECT count(*) AS rows_without_principal FROM regress_pr.images;
SELECT pg_temp.try($$INSERT INTO regress_pr.images VALUES (12, 'pr-c2', 'planted', 'x')$$) AS insert_without_principal;
WITH u AS (UPDATE regress_pr.images SET camera = 'x' RETURNING 1) SELECT count(*) AS updated_without_principal FROM u;
WITH d AS (DELETE FROM regress_pr.images RETURNING 1) SELECT count(*) AS deleted_without_principal FROM d;

-- with data.read from the owner the reseller sees the customer's rows, and
-- after the owner revokes it, no longer
BEGIN;
SELECT custos.authenticate(:'c1_tok') IS NOT NULL AS c1_owner;
SELECT custos.grant_access('pr-c1', :'rs_admin', now() + interval '1 hour') AS access_grant \gset
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT id, tenant, secret FROM regress_pr.images WHERE tenant = 'pr-c1' ORDER BY id;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c1_tok') IS NOT NULL AS c1_owner;
SELECT custos.revoke_right(:access_grant);
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT count(*) AS c1_rows_after_revoke FROM regress_pr.images WHERE tenant = 'pr-c1';
COMMIT;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- A permissive policy that the DBA or the table's owner adds next to custos'
-- widens nothing: custos' conditions are restrictive, ANDed with it, so the
-- reseller still gets none of the customer's rows, and every row read still
-- passes the read marker.  Policies on custos' own tables are refused.
-- ---------------------------------------------------------------------------
CREATE POLICY dba_open ON regress_pr.images AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
CREATE POLICY dba_open_select ON regress_pr.images FOR SELECT TO PUBLIC USING (true);
SELECT pg_temp.try('CREATE POLICY dba_open ON custos.event_log FOR SELECT TO PUBLIC USING (true)') AS on_custos_storage;
SET ROLE regress_pr_client;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT custos.set_purpose('with an extra permissive policy');
SELECT id, tenant FROM regress_pr.images ORDER BY id;
SELECT count(*) AS c1_rows FROM regress_pr.images WHERE tenant = 'pr-c1';
UPDATE regress_pr.images SET camera = camera WHERE tenant = 'pr-c1' RETURNING id;
DELETE FROM regress_pr.images WHERE tenant = 'pr-c1' RETURNING id;
SELECT pg_temp.try($$INSERT INTO regress_pr.images VALUES (13, 'pr-c1', 'planted', 'x')$$) AS insert_for_customer;
COMMIT;
-- without a principal: nothing, as before
SELECT count(*) AS rows_without_principal FROM regress_pr.images;
RESET ROLE;
DROP POLICY dba_open ON regress_pr.images;
DROP POLICY dba_open_select ON regress_pr.images;
SELECT custos.seal() > 0 AS sealed;
SELECT e.tenant, e.resource_id, pg_temp.l(e.actor) AS actor, (e.metadata ->> 'rows_examined')::int AS examined
  FROM custos.events e
 WHERE e.action = 'READ' AND e.metadata ->> 'purpose' = 'with an extra permissive policy'
 ORDER BY e.tenant;

-- ---------------------------------------------------------------------------
-- Partitions: protecting the parent protects every partition, and
-- partitions created or attached later
-- ---------------------------------------------------------------------------
CREATE TABLE regress_pr.bookings (tenant text NOT NULL, day date NOT NULL, guest text) PARTITION BY RANGE (day);
CREATE TABLE regress_pr.bookings_2025 PARTITION OF regress_pr.bookings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
SELECT custos.protect('regress_pr.bookings', 'tenant', 'bookings');
CREATE TABLE regress_pr.bookings_2026 PARTITION OF regress_pr.bookings FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE regress_pr.bookings_2027 (LIKE regress_pr.bookings);
ALTER TABLE regress_pr.bookings ATTACH PARTITION regress_pr.bookings_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
-- a sub-partitioned partition, and its own partition
CREATE TABLE regress_pr.bookings_2028 PARTITION OF regress_pr.bookings FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')
	PARTITION BY LIST (tenant);
CREATE TABLE regress_pr.bookings_2028_c1 PARTITION OF regress_pr.bookings_2028 FOR VALUES IN ('pr-c1');
CREATE TABLE regress_pr.bookings_2028_rest PARTITION OF regress_pr.bookings_2028 DEFAULT;
INSERT INTO regress_pr.bookings VALUES
	('pr-c1', '2025-03-01', 'Guest A'), ('pr-c2', '2025-03-02', 'Guest B'),
	('pr-c1', '2026-03-01', 'Guest C'), ('pr-c2', '2026-03-02', 'Guest D'),
	('pr-c1', '2027-03-01', 'Guest E'), ('pr-c2', '2027-03-02', 'Guest F'),
	('pr-c1', '2028-03-01', 'Guest G'), ('pr-c2', '2028-03-02', 'Guest H');
GRANT SELECT, INSERT, UPDATE, DELETE ON regress_pr.bookings, regress_pr.bookings_2025, regress_pr.bookings_2026,
	regress_pr.bookings_2027, regress_pr.bookings_2028, regress_pr.bookings_2028_c1, regress_pr.bookings_2028_rest TO PUBLIC;
SELECT c.oid::regclass AS relation, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname LIKE 'custos_%') AS policies
  FROM pg_partition_tree('regress_pr.bookings') t JOIN pg_class c ON c.oid = t.relid
 ORDER BY c.oid::regclass::text COLLATE "C";
SET ROLE regress_pr_client;
BEGIN;
SELECT custos.authenticate(:'rs_tok') IS NOT NULL AS rs_admin;
SELECT * FROM regress_pr.bookings ORDER BY day;
SELECT 'bookings_2025' AS partition, * FROM regress_pr.bookings_2025
UNION ALL SELECT 'bookings_2026', * FROM regress_pr.bookings_2026
UNION ALL SELECT 'bookings_2027', * FROM regress_pr.bookings_2027
UNION ALL SELECT 'bookings_2028', * FROM regress_pr.bookings_2028
UNION ALL SELECT 'bookings_2028_c1', * FROM regress_pr.bookings_2028_c1
UNION ALL SELECT 'bookings_2028_rest', * FROM regress_pr.bookings_2028_rest
ORDER BY 1, 3;
COPY regress_pr.bookings_2026 TO STDOUT;
UPDATE regress_pr.bookings_2027 SET guest = 'x' WHERE tenant = 'pr-c1' RETURNING *;
SELECT pg_temp.try($$INSERT INTO regress_pr.bookings_2026 VALUES ('pr-c1', '2026-05-05', 'planted')$$) AS insert_into_partition;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c1_tok') IS NOT NULL AS c1_owner;
SELECT count(*) AS c1_bookings FROM regress_pr.bookings;
SELECT count(*) AS c1_bookings_2028_c1 FROM regress_pr.bookings_2028_c1;
COMMIT;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- unprotect(): the superuser's, audited; the policies go, partitions included
-- ---------------------------------------------------------------------------
SET ROLE regress_pr_client;
SELECT pg_temp.try($$SELECT custos.unprotect('regress_pr.images')$$) AS by_non_superuser;
RESET ROLE;
GRANT EXECUTE ON FUNCTION custos.unprotect(regclass) TO regress_pr_client;
SET ROLE regress_pr_client;
SELECT pg_temp.try($$SELECT custos.unprotect('regress_pr.images')$$) AS granted_non_superuser;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION custos.unprotect(regclass) FROM regress_pr_client;
SELECT pg_temp.try($$SELECT custos.unprotect('regress_pr.images_invoker')$$) AS not_protected;
SELECT custos.unprotect('regress_pr.bookings');
-- every partition: row-level security off, not forced, no policy left
SELECT c.oid::regclass AS relation, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
  FROM pg_partition_tree('regress_pr.bookings') t JOIN pg_class c ON c.oid = t.relid
 ORDER BY c.oid::regclass::text COLLATE "C";
-- a partition created now is not protected any more
CREATE TABLE regress_pr.bookings_2029 PARTITION OF regress_pr.bookings FOR VALUES FROM ('2029-01-01') TO ('2030-01-01');
SELECT count(*) AS policies_2029 FROM pg_policy WHERE polrelid = 'regress_pr.bookings_2029'::regclass;
SELECT relid FROM custos.protected_table ORDER BY relid::text;

SELECT custos.seal() > 0 AS sealed;
SELECT e.tenant, e.action, e.resource_type, e.resource_id, e.resource_name, pg_temp.l(e.actor) AS actor,
       e.new_state, e.previous_state
  FROM custos.events e
 WHERE e.action IN ('PROTECT', 'UNPROTECT') AND e.resource_id LIKE 'regress_pr.%'
 ORDER BY e.id;

SELECT custos.unprotect('regress_pr.images');
SELECT custos.seal() >= 0 AS flushed;
DROP SCHEMA regress_pr CASCADE;
DROP ROLE regress_pr_client, regress_pr_viewer;
