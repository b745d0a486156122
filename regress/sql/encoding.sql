-- encoding: CREATE EXTENSION custos refuses a database whose encoding is not
-- UTF8 (the chain hashes text as UTF-8 bytes, docs/format.md), and leaves
-- nothing behind, not even the pgcrypto that CASCADE would have installed.
\set VERBOSITY terse
SELECT current_database() AS db \gset
CREATE DATABASE custos_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;

\c custos_latin1
\set VERBOSITY terse
SELECT pg_catalog.getdatabaseencoding() AS encoding;
CREATE EXTENSION custos CASCADE;
\echo :LAST_ERROR_SQLSTATE
-- the hint says what to do
DO $$
DECLARE
	state text;
	msg text;
	hint text;
BEGIN
	CREATE EXTENSION custos CASCADE;
	RAISE EXCEPTION 'CREATE EXTENSION custos succeeded in a LATIN1 database';
EXCEPTION WHEN feature_not_supported THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RAISE NOTICE '% / % / %', state, msg, hint;
END
$$;
SELECT count(*) AS extensions FROM pg_extension WHERE extname IN ('custos', 'pgcrypto');
SELECT count(*) AS custos_schemas FROM pg_namespace WHERE nspname = 'custos';

\c :db
\set VERBOSITY terse
DROP DATABASE custos_latin1;
SELECT count(*) AS latin1_left FROM pg_database WHERE datname = 'custos_latin1';
-- the UTF8 database the tests run in has the extension
SELECT pg_catalog.getdatabaseencoding() AS encoding,
       (SELECT count(*) FROM pg_extension WHERE extname = 'custos') AS custos;
