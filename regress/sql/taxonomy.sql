-- taxonomy: in strict mode custos.log() accepts only registered actions,
-- categories and resource types, and says which ones are allowed; the
-- registry grows with custos.register_*() (superuser, audited); open mode
-- accepts anything.  setup.sql switched this database to open mode.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT custos.seal() >= 0 AS flushed;
SELECT coalesce(max(id), 0) AS start_id FROM custos.event_log \gset

-- the built-in names: seeds 002 and 003 and custos' own events
SELECT kind, count(*) AS builtin FROM custos.taxonomy WHERE builtin GROUP BY kind ORDER BY kind;
SELECT kind, string_agg(name, ' ' ORDER BY name COLLATE "C") AS names
  FROM custos.taxonomy WHERE builtin GROUP BY kind ORDER BY kind;

-- open (as setup left it): anything goes
SELECT custos.taxonomy_mode();
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "tx-a", "action": "FROB", "category": "misc", "resource_type": "THING"}')$$);

-- strict: unknown names are refused with 22023, before anything is written
SELECT custos.set_taxonomy_mode('strict');
SELECT custos.taxonomy_mode();
SELECT count(*) AS events_before FROM custos.event_log \gset
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "tx-a", "action": "FROB"}')$$);
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "tx-a", "action": "UPDATE", "category": "misc"}')$$);
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "tx-a", "action": "UPDATE", "resource_type": "THING"}')$$);
-- names are case-sensitive
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "tx-a", "action": "update"}')$$);
-- a batch with one unknown name writes nothing
SELECT pg_temp.try($$SELECT custos.log_batch('[{"tenant": "tx-a", "action": "CREATE"}, {"tenant": "tx-a", "action": "FROB"}]')$$);
SELECT count(*) = :events_before AS nothing_written FROM custos.event_log;
-- the full error: the allowed values and how to register
\set VERBOSITY default
SELECT custos.log('{"tenant": "tx-a", "action": "UPDATE", "resource_type": "THING"}');
\set VERBOSITY terse
-- registered names and absent fields pass
SELECT custos.log('{"tenant": "tx-a", "action": "DEPLOY", "category": "scheme", "resource_type": "SCHEME"}') > 0 AS logged;
SELECT custos.log('{"tenant": "tx-a", "action": "LOGIN"}') > 0 AS logged;

-- registering (superuser): true when new, audited; then accepted
SELECT custos.register_action('FROB', 'frobnicated a thing');
SELECT custos.register_action('FROB');
SELECT custos.register_category('misc');
SELECT custos.register_resource_type('THING', 'a thing');
SELECT custos.log('{"tenant": "tx-a", "action": "FROB", "category": "misc", "resource_type": "THING"}') > 0 AS logged;
SELECT kind, name, description, builtin FROM custos.taxonomy WHERE NOT builtin ORDER BY kind, name;
-- bad names and kinds
SELECT pg_temp.try($$SELECT custos.register_action('')$$);
SELECT pg_temp.try($$SELECT custos.register_action('two words')$$);
SELECT pg_temp.try($$SELECT custos.register_taxonomy('colour', 'RED')$$);
SELECT pg_temp.try($$SELECT custos.set_taxonomy_mode('lenient')$$);
-- a rolled-back registration is gone for this session too
BEGIN;
SELECT custos.register_action('TEMPORARY');
SELECT custos.log('{"tenant": "tx-a", "action": "TEMPORARY"}') > 0 AS logged_inside;
ROLLBACK;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "tx-a", "action": "TEMPORARY"}')$$);

-- the registry is custos storage: no direct writes, superusers included
SELECT pg_temp.try($$INSERT INTO custos.taxonomy (kind, name) VALUES ('action', 'SNEAKY')$$);
SELECT pg_temp.try($$UPDATE custos.taxonomy_setting SET mode = 'open'$$);
SELECT pg_temp.try($$DELETE FROM custos.taxonomy WHERE name = 'FROB'$$);
-- only superusers change it; everyone may read it
CREATE ROLE regress_tx_user;
SET ROLE regress_tx_user;
SELECT pg_temp.try($$SELECT custos.register_action('MINE')$$);
SELECT pg_temp.try($$SELECT custos.set_taxonomy_mode('open')$$);
SELECT custos.taxonomy_mode(), count(*) > 40 AS can_read FROM custos.taxonomy;
RESET ROLE;
DROP ROLE regress_tx_user;

-- the registrations and mode switches are events of custos-system
SELECT tenant, category, action, resource_type, resource_id, previous_state, new_state
  FROM custos.events WHERE id > :start_id AND resource_type = 'TAXONOMY' ORDER BY id;

SELECT custos.set_taxonomy_mode('open');
