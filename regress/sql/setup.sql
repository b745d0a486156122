-- setup: the extension installs with its dependency and reports its mode.
\set VERBOSITY terse
CREATE EXTENSION custos CASCADE;
SELECT extname, extversion FROM pg_extension WHERE extname IN ('custos', 'pgcrypto') ORDER BY 1;
SELECT preloaded, watermark, sealed_total, pending FROM custos.status();
-- nothing is granted to PUBLIC on storage or functions
SELECT count(*) AS public_table_grants
  FROM information_schema.role_table_grants
 WHERE table_schema = 'custos' AND grantee = 'PUBLIC';
SELECT count(*) AS public_function_grants
  FROM information_schema.role_routine_grants
 WHERE routine_schema = 'custos' AND grantee = 'PUBLIC';
