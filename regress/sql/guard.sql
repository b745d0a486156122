-- guard: custos storage is append-only for every role, superusers included;
-- DDL that would lift the guard (triggers, row-level security, policies) is
-- refused; the privacy catalog is closed to non-superusers; a role appends
-- only as a principal and never writes storage.
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

-- Storage tables carry the guard triggers; the privacy catalog (tenants,
-- principals, grants, tokens, protected tables) is mutable and closed
-- instead: only custos' administration functions and superusers write it.
SELECT c.relname AS "table",
       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'guard_write') AS guarded,
       c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls
  FROM pg_class c
 WHERE c.relnamespace = 'custos'::regnamespace AND c.relkind = 'r'
 ORDER BY 1;

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
   AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'guard_write')
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
	('DROP VIEW custos.events'),
	-- row-level security and its policies are part of the guard too
	('ALTER TABLE custos.event_log NO FORCE ROW LEVEL SECURITY'),
	('ALTER TABLE custos.data_key DISABLE ROW LEVEL SECURITY'),
	('DROP POLICY read_events ON custos.event_log'),
	('CREATE POLICY open ON custos.event_log FOR SELECT USING (true)'),
	('CREATE POLICY open ON custos.data_key FOR SELECT USING (true)'),
	('ALTER POLICY read_events ON custos.event_log USING (true)'),
	('ALTER POLICY read_keys ON custos.data_key USING (true)');
SELECT n, stmt, pg_temp.attempt(stmt) AS sqlstate FROM ddl ORDER BY n;
\set VERBOSITY default
ALTER TABLE custos.event_log DISABLE TRIGGER guard_write;
DROP TRIGGER guard_write ON custos.event_log;
\set VERBOSITY terse
-- a permissive policy would open the log and its keys: refused outright,
-- for the superuser too (not merely undone)
SELECT pg_temp.try('CREATE POLICY open ON custos.event_log FOR SELECT USING (true)') AS create_policy;
SELECT pg_temp.try('CREATE POLICY open ON custos.data_key AS PERMISSIVE FOR ALL USING (true)') AS create_key_policy;
SELECT pg_temp.try('CREATE POLICY open ON custos.block FOR SELECT USING (true)') AS create_block_policy;
SELECT pg_temp.try('ALTER POLICY read_events ON custos.event_log USING (true)') AS alter_policy;
SELECT pg_temp.try('ALTER POLICY read_keys ON custos.data_key TO pg_read_all_data') AS alter_key_policy_roles;

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

SELECT c.relname AS "table", count(p.polname) AS policies
  FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
 WHERE c.relnamespace = 'custos'::regnamespace AND c.relrowsecurity
 GROUP BY c.relname ORDER BY 1;

-- ---------------------------------------------------------------------------
-- An application role
-- ---------------------------------------------------------------------------
CREATE ROLE regress_custos_app;
-- the privacy catalog, as the role sees it: every statement undone
CREATE TEMP VIEW catalog_writes AS
SELECT t AS "table", op,
       pg_temp.attempt(CASE op
         WHEN 'SELECT' THEN format('SELECT * FROM custos.%I', t)
         WHEN 'INSERT' THEN format('INSERT INTO custos.%I DEFAULT VALUES', t)
         WHEN 'UPDATE' THEN format('UPDATE custos.%I SET %I = %I', t, col, col)
         WHEN 'DELETE' THEN format('DELETE FROM custos.%I', t)
         WHEN 'TRUNCATE' THEN format('TRUNCATE custos.%I CASCADE', t)
       END) AS sqlstate
  FROM unnest(ARRAY['tenant', 'principal', 'right_grant', 'token', 'protected_table'],
              ARRAY['name', 'name', 'right_name', 'label', 'data_class']) WITH ORDINALITY r(t, col, m),
       unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) WITH ORDINALITY o(op, n)
 ORDER BY m, n;
GRANT SELECT ON catalog_writes TO PUBLIC;

-- without a principal: the audit log shows nothing, the installation secret
-- stays closed, appends are refused
SET ROLE regress_custos_app;
SELECT count(*) AS event_log_rows FROM custos.event_log;
SELECT count(*) AS data_key_rows FROM custos.data_key;
SELECT count(*) AS block_rows FROM custos.block;
SELECT count(*) AS events_rows FROM custos.events;
SELECT pg_temp.try('SELECT count(*) FROM custos.installation') AS read_installation;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "guard", "action": "A"}')$$) AS log;
SELECT pg_temp.try($$SELECT custos.log_batch('[{"tenant": "guard", "action": "A"}]')$$) AS log_batch;
-- an empty batch appends nothing
SELECT count(*) AS appended FROM custos.log_batch('[]');
SELECT pg_temp.try('SELECT custos.seal()') AS seal;
SELECT pg_temp.try('SELECT custos.verify()') AS verify;
SELECT pg_temp.try($$SELECT custos.digest('guard')$$) AS digest;
SELECT pg_temp.try('SELECT custos.status()') AS status;
SELECT pg_temp.try($$SELECT nextval('custos.event_id_seq')$$) AS draw_id;
SELECT * FROM catalog_writes;
RESET ROLE;

-- mapped to a principal of tenant "guard": it appends, and custos records who did
SELECT custos.create_tenant('guard');
SELECT custos.create_principal('guard', 'guard app', 'app', 'member', 'regress_custos_app') AS app_principal \gset
CREATE TEMP TABLE app_principal AS SELECT :'app_principal'::text AS id;
GRANT SELECT ON app_principal TO PUBLIC;
SET ROLE regress_custos_app;
SELECT custos.current_principal() = (SELECT id FROM app_principal) AS acts_as_principal;
CREATE TEMP TABLE app_ids AS SELECT custos.log('{"tenant": "guard", "action": "APP"}') AS id;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "guard", "action": "APP", "access": "role:postgres"}')$$) AS claim_access;
-- a member without audit.read reads no events, not even its own
SELECT count(*) AS event_log_rows FROM custos.event_log;
-- the privacy catalog is closed to principals as well
SELECT * FROM catalog_writes;
-- a non-superuser cannot bypass the guard, nor loosen the limits
SELECT pg_temp.try('SET session_replication_role = replica') AS replica_role;
SELECT pg_temp.try('SET custos.max_event_bytes = 16777216') AS max_event_bytes;
SELECT pg_temp.try('SET custos.block_max_events = 1') AS block_max_events;
-- nor alter storage in any way: row-level security, policies and triggers included
SELECT pg_temp.try('ALTER TABLE custos.event_log ADD COLUMN note text') AS add_column;
SELECT pg_temp.try('ALTER TABLE custos.block OWNER TO regress_custos_app') AS change_owner;
SELECT pg_temp.try('ALTER TABLE custos.event_log DISABLE TRIGGER guard_write') AS disable_trigger;
SELECT pg_temp.try('ALTER TABLE custos.event_log DISABLE TRIGGER ALL') AS disable_all_triggers;
SELECT pg_temp.try('ALTER TABLE custos.event_log DISABLE ROW LEVEL SECURITY') AS disable_rls;
SELECT pg_temp.try('ALTER TABLE custos.event_log NO FORCE ROW LEVEL SECURITY') AS no_force_rls;
SELECT pg_temp.try('ALTER TABLE custos.data_key DISABLE ROW LEVEL SECURITY') AS disable_key_rls;
SELECT pg_temp.try('DROP POLICY read_events ON custos.event_log') AS drop_policy;
SELECT pg_temp.try('CREATE POLICY open ON custos.event_log FOR SELECT USING (true)') AS create_policy;
SELECT pg_temp.try('ALTER POLICY read_events ON custos.event_log USING (true)') AS alter_policy;
SELECT pg_temp.try('ALTER TABLE custos.tenant DISABLE ROW LEVEL SECURITY') AS alter_catalog;
SELECT pg_temp.try('ALTER SEQUENCE custos.event_id_seq CACHE 10') AS sequence_cache;
SELECT pg_temp.try('CREATE INDEX ON custos.event_log (action)') AS create_index;
RESET ROLE;
SELECT e.action, e.access = p.id AS access_is_principal, e.actor = p.id AS actor_is_principal, e.actor_type
  FROM custos.events e JOIN app_ids USING (id), app_principal p;

-- table privileges granted by mistake do not open storage either
GRANT INSERT, UPDATE, DELETE, TRUNCATE ON custos.event_log TO regress_custos_app;
SET ROLE regress_custos_app;
SELECT pg_temp.try('DELETE FROM custos.event_log') AS delete;
SELECT pg_temp.try('TRUNCATE custos.event_log') AS truncate;
RESET ROLE;
REVOKE ALL ON custos.event_log FROM regress_custos_app;

-- the appends are sealed like any other: the tenant, the principal, APP
SELECT custos.seal() AS sealed;
SELECT tenant, ok, events_checked, pending FROM custos.verify('guard');

DROP TABLE app_ids, app_principal;
DROP VIEW catalog_writes;
SELECT custos.disable_principal(:'app_principal');
DROP ROLE regress_custos_app;
