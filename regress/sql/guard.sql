-- guard: custos storage is append-only for every role, superusers included;
-- DDL that would lift the guard is refused; roles need grants on the
-- functions and never on storage.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;
-- run a statement and undo it whatever happens; report only its SQLSTATE
CREATE FUNCTION pg_temp.attempt(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RAISE SQLSTATE 'UNDO0';
EXCEPTION
	WHEN SQLSTATE 'UNDO0' THEN RETURN 'ok';
	WHEN OTHERS THEN RETURN SQLSTATE;
END
$$;

SELECT custos.seal() >= 0 AS flushed;
SELECT custos.log('{"tenant": "guard", "action": "BEFORE"}') > 0 AS logged;
SELECT custos.seal() AS sealed;
CREATE TEMP TABLE counts AS
SELECT (SELECT count(*) FROM custos.event_log) AS events, (SELECT count(*) FROM custos.block) AS blocks,
       (SELECT count(*) FROM custos.data_key) AS keys, (SELECT watermark FROM custos.sealer_state) AS watermark;

-- ---------------------------------------------------------------------------
-- Writes to storage, as superuser.  Everything runs in a transaction that is
-- rolled back, so that a write the guard failed to refuse changes nothing.
-- ---------------------------------------------------------------------------
BEGIN;
SELECT c.relname AS "table", op,
       pg_temp.try(CASE op
         WHEN 'INSERT' THEN format('INSERT INTO custos.%I SELECT * FROM custos.%I', c.relname, c.relname)
         WHEN 'UPDATE' THEN format('UPDATE custos.%I SET %I = %I', c.relname, a.attname, a.attname)
         WHEN 'DELETE' THEN format('DELETE FROM custos.%I', c.relname)
         WHEN 'TRUNCATE' THEN format('TRUNCATE custos.%I', c.relname)
       END) AS result
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1,
       unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) WITH ORDINALITY o(op, n)
 WHERE c.relnamespace = 'custos'::regnamespace AND c.relkind = 'r'
 ORDER BY c.relname, o.n;
-- also when no row is touched: the triggers are per statement
SELECT pg_temp.try('DELETE FROM custos.event_log WHERE false') AS delete_nothing;
SELECT pg_temp.try('UPDATE custos.block SET tenant = tenant WHERE false') AS update_nothing;
-- and through a writable CTE
SELECT pg_temp.try('WITH d AS (DELETE FROM custos.data_key RETURNING 1) SELECT count(*) FROM d') AS cte_delete;
ROLLBACK;

-- the detail names the operation and the table
\set VERBOSITY default
UPDATE custos.sealer_state SET watermark = watermark;
\set VERBOSITY terse

-- ---------------------------------------------------------------------------
-- DDL on storage, as superuser: each statement is undone, refused or not
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE ddl (n serial, stmt text);
INSERT INTO ddl (stmt) VALUES
	('ALTER TABLE custos.event_log DISABLE TRIGGER guard_write'),
	('ALTER TABLE custos.event_log DISABLE TRIGGER ALL'),
	('ALTER TABLE custos.event_log DISABLE TRIGGER USER'),
	('ALTER TABLE custos.block ENABLE REPLICA TRIGGER guard_write'),
	('ALTER TABLE custos.data_key DISABLE TRIGGER guard_truncate'),
	('ALTER TABLE custos.block DISABLE ROW LEVEL SECURITY'),
	('DROP TRIGGER guard_write ON custos.event_log'),
	('DROP TRIGGER guard_truncate ON custos.installation'),
	('CREATE TRIGGER skip BEFORE UPDATE ON custos.event_log FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()'),
	('ALTER TRIGGER guard_write ON custos.block RENAME TO unguard'),
	('ALTER TABLE custos.event_log RENAME TO event_log_old'),
	('ALTER TABLE custos.event_log RENAME COLUMN action TO verb'),
	-- moving a table out of the schema takes it out of the hook's reach
	('ALTER TABLE custos.event_log SET SCHEMA public'),
	-- a rule would divert custos'' own inserts: custos.log() would return an
	-- id for an event that is never stored, and verify cannot see it
	('CREATE RULE divert AS ON INSERT TO custos.event_log DO INSTEAD NOTHING'),
	('CREATE RULE divert AS ON INSERT TO custos.block DO INSTEAD NOTHING'),
	('DROP TABLE custos.event_log'),
	('DROP TABLE custos.block, custos.checkpoint CASCADE'),
	('DROP INDEX custos.event_log_tenant_id'),
	('DROP SEQUENCE custos.event_id_seq'),
	('DROP VIEW custos.events');
SELECT n, stmt, pg_temp.attempt(stmt) AS sqlstate FROM ddl ORDER BY n;
\set VERBOSITY default
ALTER TABLE custos.event_log DISABLE TRIGGER guard_write;
DROP TRIGGER guard_write ON custos.event_log;
\set VERBOSITY terse

-- nothing above changed anything
SELECT (SELECT count(*) FROM custos.event_log) = events AS events_unchanged,
       (SELECT count(*) FROM custos.block) = blocks AS blocks_unchanged,
       (SELECT count(*) FROM custos.data_key) = keys AS keys_unchanged,
       (SELECT watermark FROM custos.sealer_state) = watermark AS watermark_unchanged
  FROM counts;
SELECT tgrelid::regclass AS "table", count(*) AS guard_triggers,
       bool_and(tgenabled = 'O') AS enabled
  FROM pg_trigger
 WHERE tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'custos'::regnamespace) AND NOT tgisinternal
 GROUP BY tgrelid ORDER BY tgrelid::regclass::text COLLATE "C";

-- ---------------------------------------------------------------------------
-- An application role
-- ---------------------------------------------------------------------------
CREATE ROLE regress_custos_app;

-- without grants: no storage, no view, no function
SET ROLE regress_custos_app;
SELECT pg_temp.try('SELECT count(*) FROM custos.event_log') AS read_event_log;
SELECT pg_temp.try('SELECT count(*) FROM custos.data_key') AS read_data_key;
SELECT pg_temp.try('SELECT count(*) FROM custos.installation') AS read_installation;
SELECT pg_temp.try('SELECT count(*) FROM custos.events') AS read_events;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "guard", "action": "A"}')$$) AS log;
SELECT pg_temp.try($$SELECT custos.log_batch('[]')$$) AS log_batch;
SELECT pg_temp.try('SELECT custos.seal()') AS seal;
SELECT pg_temp.try('SELECT custos.verify()') AS verify;
SELECT pg_temp.try($$SELECT custos.digest('guard')$$) AS digest;
SELECT pg_temp.try('SELECT custos.status()') AS status;
SELECT pg_temp.try($$SELECT nextval('custos.event_id_seq')$$) AS draw_id;
RESET ROLE;

-- with EXECUTE on custos.log: it appends, and custos records who did
GRANT EXECUTE ON FUNCTION custos.log(jsonb) TO regress_custos_app;
SET ROLE regress_custos_app;
CREATE TEMP TABLE app_ids AS SELECT custos.log('{"tenant": "guard", "action": "APP"}') AS id;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "guard", "action": "APP", "access": "role:postgres"}')$$) AS claim_access;
-- still no storage
SELECT pg_temp.try('SELECT count(*) FROM custos.event_log') AS read_event_log;
SELECT pg_temp.try($$SELECT custos.log_batch('[]')$$) AS log_batch;
-- a non-superuser cannot bypass the guard, nor loosen the limits
SELECT pg_temp.try('SET session_replication_role = replica') AS replica_role;
SELECT pg_temp.try('SET custos.max_event_bytes = 16777216') AS max_event_bytes;
SELECT pg_temp.try('SET custos.block_max_events = 1') AS block_max_events;
-- nor alter storage in any way
SELECT pg_temp.try('ALTER TABLE custos.event_log ADD COLUMN note text') AS add_column;
SELECT pg_temp.try('ALTER TABLE custos.block OWNER TO regress_custos_app') AS change_owner;
SELECT pg_temp.try('ALTER TABLE custos.event_log DISABLE TRIGGER guard_write') AS disable_trigger;
SELECT pg_temp.try('ALTER SEQUENCE custos.event_id_seq CACHE 10') AS sequence_cache;
SELECT pg_temp.try('CREATE INDEX ON custos.event_log (action)') AS create_index;
RESET ROLE;
SELECT e.action, e.access, e.actor, e.actor_type
  FROM custos.events e JOIN app_ids USING (id);

-- table privileges granted by mistake do not open storage either
GRANT INSERT, UPDATE, DELETE, TRUNCATE ON custos.event_log TO regress_custos_app;
SET ROLE regress_custos_app;
SELECT pg_temp.try('DELETE FROM custos.event_log') AS delete;
SELECT pg_temp.try('TRUNCATE custos.event_log') AS truncate;
RESET ROLE;
REVOKE ALL ON custos.event_log FROM regress_custos_app;

-- the append is sealed like any other
SELECT custos.seal() AS sealed;
SELECT tenant, ok, events_checked, pending FROM custos.verify('guard');

DROP TABLE app_ids;
REVOKE ALL ON FUNCTION custos.log(jsonb) FROM regress_custos_app;
DROP ROLE regress_custos_app;
