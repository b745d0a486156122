-- setup: the extension installs with its dependency and reports its mode.
\set VERBOSITY terse
CREATE EXTENSION custos CASCADE;
SELECT extname, extversion FROM pg_extension WHERE extname IN ('custos', 'pgcrypto') ORDER BY 1;
SELECT preloaded, watermark, sealed_total, pending FROM custos.status();
-- What PUBLIC may use in schema custos, exactly.  Since 0.2 the row-level
-- policies decide what a reader sees (no principal: nothing), so the audit
-- log, its keys and blocks are readable by PUBLIC; the reader functions and
-- custos.log() decide by the caller's principal; the administration
-- functions check their caller themselves.  Everything else, the
-- installation secret and the privacy catalog above all, stays closed.
SELECT a.privilege_type AS schema_privilege
  FROM pg_namespace n, aclexplode(n.nspacl) a
 WHERE n.nspname = 'custos' AND a.grantee = 0;
SELECT c.relname AS relation, c.relkind, a.privilege_type
  FROM pg_class c,
       aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
 WHERE c.relnamespace = 'custos'::regnamespace AND a.grantee = 0
 ORDER BY 1, 3;
SELECT p.oid::regprocedure AS function
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'custos'::regnamespace AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'
 ORDER BY p.proname COLLATE "C", 1::text COLLATE "C";
-- the same, through the information schema
SELECT count(*) AS public_table_grants
  FROM information_schema.role_table_grants
 WHERE table_schema = 'custos' AND grantee = 'PUBLIC';
SELECT count(*) AS public_function_grants
  FROM information_schema.role_routine_grants
 WHERE routine_schema = 'custos' AND grantee = 'PUBLIC';
-- protect() and unprotect() are the superuser's: not PUBLIC's to execute
-- (unlike the read marker their policies call)
SELECT f AS function, has_function_privilege('public', f, 'EXECUTE') AS public_execute
  FROM unnest(ARRAY['custos.protect(regclass,name,text)', 'custos.unprotect(regclass)',
                    'custos.note_read(text,regclass)']::regprocedure[]) f
 ORDER BY f::text COLLATE "C";
-- A new installation validates actions, categories and resource types
-- against the taxonomy (strict); the tests of the other features use
-- free-form names ("A", "NOTE", ...), so this database is switched to open
-- mode.  capture.sql and taxonomy.sql test strict mode and switch back.
SELECT custos.taxonomy_mode() AS initial_taxonomy_mode;
SELECT custos.set_taxonomy_mode('open');
