-- upgrade: a database created at version 0.1, with sealed and pending
-- events, updates to 0.2 in place: the events stay readable and verifiable,
-- the privacy catalog and row-level security arrive, PUBLIC gets exactly
-- what a fresh 0.2 install grants, and the privacy functions work on the
-- old tenants once they are registered.  A database of its own (the
-- background sealer, off in tests anyway, serves custos_regress only).
\set VERBOSITY terse
SELECT current_database() AS main_db \gset
CREATE ROLE regress_up_reader;
CREATE DATABASE custos_upgrade;
\c custos_upgrade
\set VERBOSITY terse
CREATE EXTENSION custos VERSION '0.1' CASCADE;
SELECT extversion FROM pg_extension WHERE extname = 'custos';
SELECT count(*) AS events FROM custos.log_batch($$[
	{"tenant": "up-a", "action": "LOGIN", "actor": "u-1", "actor_name": "Ann", "source_ip": "192.0.2.1"},
	{"tenant": "up-a", "action": "VIEW", "actor": "u-1", "subject": "cam-1", "new_state": {"zoom": 2}},
	{"tenant": "up-b", "action": "LOGIN", "actor": "u-2"},
	{"tenant": "legacy tenant/1", "action": "LOGIN", "actor": "u-3"}
]$$);
SELECT custos.seal() AS sealed;
SELECT custos.log('{"tenant": "up-a", "action": "PENDING", "actor": "u-1"}') > 0 AS pending_logged;
-- 0.1: no row-level security, nothing for PUBLIC
SELECT relname, relrowsecurity FROM pg_class
 WHERE relnamespace = 'custos'::regnamespace AND relname IN ('event_log', 'block', 'data_key') ORDER BY 1;
SELECT count(*) AS public_function_grants
  FROM information_schema.role_routine_grants WHERE routine_schema = 'custos' AND grantee = 'PUBLIC';

ALTER EXTENSION custos UPDATE TO '0.2';
SELECT extversion FROM pg_extension WHERE extname = 'custos';

-- the old events, as the superuser: every field in clear, sealed or pending as before
SELECT tenant, action, actor, actor_name, source_ip, subject, new_state, personal_data, sealed, seq
  FROM custos.events ORDER BY id;
SELECT custos.seal() AS sealed;
SELECT tenant, ok, events_checked, blocks_checked, pending FROM custos.verify() ORDER BY tenant;

-- what 0.2 brings: the catalog, forced row-level security, PUBLIC's grants.
-- The tenants the log names are registered, top-level; an id 0.1 accepted
-- but 0.2 does not ("legacy tenant/1") is left out, and the upgrade goes on.
SELECT id, parent, privacy_mode FROM custos.tenant ORDER BY id;
SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
 WHERE relnamespace = 'custos'::regnamespace AND relname IN ('event_log', 'block', 'data_key') ORDER BY 1;
SELECT c.relname AS relation, a.privilege_type
  FROM pg_class c,
       aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
 WHERE c.relnamespace = 'custos'::regnamespace AND a.grantee = 0
 ORDER BY 1, 2;
SELECT p.oid::regprocedure AS function
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'custos'::regnamespace AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'
 ORDER BY p.proname COLLATE "C", 1::text COLLATE "C";
SELECT p.oid::regprocedure AS unpinned_security_definer
  FROM pg_proc p
 WHERE p.pronamespace = 'custos'::regnamespace AND p.prosecdef
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);

-- the tenants the log names are registered as top-level tenants; without a
-- principal nobody but the superuser reads them
SET ROLE regress_up_reader;
SELECT count(*) AS events_without_principal FROM custos.events;
RESET ROLE;
-- registering one again is refused
SELECT custos.create_tenant('up-a', NULL, 'Tenant from 0.1');
-- principals can be created for them at once: an owner, with a token
SELECT custos.create_principal('up-a', 'Ann Owner', 'user', 'owner') AS owner \gset
SELECT token AS owner_tok FROM custos.issue_token(:'owner') \gset
-- Reading the log as a principal is a read of protected data, and READ
-- events are appended by the sealer, which serves custos.database
-- (custos_regress) only: in this database such reads are refused rather
-- than left unrecorded.  Appending works.
SET ROLE regress_up_reader;
BEGIN;
SELECT custos.authenticate(:'owner_tok') ->> 'tenant' AS authenticated_for;
SELECT tenant, action, actor, actor_name, subject, personal_data FROM custos.events
 WHERE action IN ('LOGIN', 'VIEW', 'PENDING') ORDER BY id;
ROLLBACK;
BEGIN;
SELECT custos.authenticate(:'owner_tok') ->> 'tenant' AS authenticated_for;
SELECT custos.log('{"tenant": "up-a", "action": "AFTER_UPGRADE"}') > 0 AS appended;
-- the owner issues itself a token: the superuser's cannot switch privacy mode on
SELECT token AS own_tok FROM custos.issue_token(:'owner') \gset
COMMIT;
-- privacy mode and the owner's own switch
BEGIN;
SELECT custos.authenticate(:'own_tok') IS NOT NULL AS authenticated;
SELECT custos.set_privacy_mode('up-a', true);
COMMIT;
RESET ROLE;
-- the new events, all sealed and verified; no READ event (nothing was read)
SELECT custos.seal() > 0 AS sealed;
SELECT tenant, action, category, resource_type,
       regexp_replace(resource_id, '^(p|tok)_[0-9a-f]{16}$', '\1_<random>') AS resource_id
  FROM custos.events
 WHERE id > (SELECT max(id) FROM custos.events WHERE action = 'PENDING') AND tenant = 'up-a'
 ORDER BY id;
SELECT tenant, ok, pending FROM custos.verify() ORDER BY tenant;

-- on through every later version: the log still verifies, and the schema
-- ends up exactly as a fresh install's (objects, signatures, privileges)
ALTER EXTENSION custos UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'custos';
SELECT tenant, ok, pending FROM custos.verify() ORDER BY tenant;
CREATE VIEW pg_temp.custos_objects AS
SELECT 'relation ' || c.relkind::text || ' ' || c.relname || ' ' || coalesce(c.relacl::text, '-') AS object
  FROM pg_class c WHERE c.relnamespace = 'custos'::regnamespace
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text || ' ' || p.prokind::text || ' ' || p.prosecdef::text || ' ' ||
	   coalesce(p.proacl::text, '-') || ' ' || coalesce(p.proconfig::text, '-')
  FROM pg_proc p WHERE p.pronamespace = 'custos'::regnamespace
UNION ALL
SELECT 'trigger ' || t.tgrelid::regclass::text || ' ' || t.tgname
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'custos'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || pol.polrelid::regclass::text || ' ' || pol.polname
  FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid WHERE c.relnamespace = 'custos'::regnamespace;
SELECT string_agg(object, E'\n' ORDER BY object COLLATE "C") AS upgraded_objects FROM pg_temp.custos_objects \gset
\c postgres
CREATE DATABASE custos_fresh;
\c custos_fresh
\set VERBOSITY terse
CREATE EXTENSION custos CASCADE;
CREATE VIEW pg_temp.custos_objects AS
SELECT 'relation ' || c.relkind::text || ' ' || c.relname || ' ' || coalesce(c.relacl::text, '-') AS object
  FROM pg_class c WHERE c.relnamespace = 'custos'::regnamespace
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text || ' ' || p.prokind::text || ' ' || p.prosecdef::text || ' ' ||
	   coalesce(p.proacl::text, '-') || ' ' || coalesce(p.proconfig::text, '-')
  FROM pg_proc p WHERE p.pronamespace = 'custos'::regnamespace
UNION ALL
SELECT 'trigger ' || t.tgrelid::regclass::text || ' ' || t.tgname
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'custos'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || pol.polrelid::regclass::text || ' ' || pol.polname
  FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid WHERE c.relnamespace = 'custos'::regnamespace;
-- what differs, if anything (empty when the two match)
SELECT o AS only_in_upgraded FROM unnest(string_to_array(:'upgraded_objects', E'\n')) o
EXCEPT SELECT object FROM pg_temp.custos_objects ORDER BY 1;
SELECT object AS only_in_fresh FROM pg_temp.custos_objects
EXCEPT SELECT o FROM unnest(string_to_array(:'upgraded_objects', E'\n')) o ORDER BY 1;
\c postgres
DROP DATABASE custos_fresh;

\c :main_db
\set VERBOSITY terse
DROP DATABASE custos_upgrade;
DROP ROLE regress_up_reader;
