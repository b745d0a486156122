-- capture: custos.track() records every INSERT, UPDATE, DELETE and TRUNCATE
-- of an application table as an audit event of the row's tenant, in the same
-- transaction: the key as resource_id, the changed columns only for UPDATE,
-- excluded columns never, redacted and deny-listed columns (password, token,
-- ...) as "[redacted]".  The actor is the authenticated principal or the
-- database role.  Events are visible exactly to the tenant's audit readers.
\set VERBOSITY terse
SET TimeZone = 'UTC';
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;
SELECT custos.seal() >= 0 AS flushed;
SELECT coalesce(max(id), 0) AS start_id FROM custos.event_log \gset
-- capture checks its names against the taxonomy in strict mode
SELECT custos.set_taxonomy_mode('strict');

-- tenants, an application role mapped to a principal, a works-council
-- reader with audit.read and an outsider of another tenant
CREATE ROLE regress_cap_app;
CREATE ROLE regress_cap_wc;
CREATE ROLE regress_cap_out;
SELECT custos.create_tenant('cap-a', NULL, 'Tenant A');
SELECT custos.create_tenant('cap-b', NULL, 'Tenant B');
SELECT custos.create_principal('cap-a', 'Booking app', 'app', 'member', 'regress_cap_app') AS app_p \gset
SELECT custos.create_principal('cap-a', 'Wendy Works-Council', 'user', 'member', 'regress_cap_wc') AS wc_p \gset
SELECT custos.create_principal('cap-b', 'Oscar Outsider', 'user', 'owner', 'regress_cap_out') AS out_p \gset
SELECT custos.grant_right('cap-a', :'wc_p', 'audit.read', NULL) > 0 AS granted;

CREATE SCHEMA capapp;
GRANT USAGE ON SCHEMA capapp TO PUBLIC;
CREATE TABLE capapp.account (
	id			int PRIMARY KEY,
	tenant		text NOT NULL,
	login		text NOT NULL,
	email		text,
	password	text,
	api_token	text,
	notes		text,
	created		date,
	score		numeric,
	prefs		jsonb,
	tags		text[]
);
GRANT SELECT, INSERT, UPDATE, DELETE ON capapp.account TO regress_cap_app;

-- this file's captured events, personal fields decrypted (superuser)
CREATE TEMP VIEW cap AS
SELECT row_number() OVER (ORDER BY id) AS n, id, tenant, category, action, resource_type,
	   resource_id, resource_name, target_level, target_name, previous_state, new_state, metadata
  FROM custos.events
 WHERE id > :start_id AND category IS DISTINCT FROM 'access'
   AND category IS DISTINCT FROM 'privacy';

-- ---------------------------------------------------------------------------
-- track(): arguments are checked
-- ---------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'NOPE', 'tenant')$$);
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'USER', 'tenant', category => 'nope')$$);
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'USER', 'tenant', actions => '{"UPDATE": "FIDDLE"}')$$);
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'USER', 'tenant', actions => '{"MERGE": "UPDATE"}')$$);
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'USER', 'no_such_column')$$);
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'USER', 'tenant', excluded => ARRAY['nope'])$$);
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'USER', 'tenant', excluded => ARRAY['id'])$$);
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'USER', 'tenant', target_level => 'PLANET')$$);
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'USER', 'tenant', metadata => '{"x": 5}')$$);
SELECT pg_temp.try($$SELECT custos.track('custos.event_log', 'USER', 'tenant')$$);
SELECT pg_temp.try($$SELECT custos.track('custos.events', 'USER', 'tenant')$$);
-- only superusers track
SET ROLE regress_cap_app;
SELECT pg_temp.try($$SELECT custos.track('capapp.account', 'USER', 'tenant')$$);
SELECT pg_temp.try($$SELECT custos.untrack('capapp.account')$$);
RESET ROLE;

SELECT custos.track('capapp.account', 'USER', 'tenant', resource_name_column => 'login',
					category => 'user', excluded => ARRAY['notes'], redacted => ARRAY['email']);
SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'capapp.account'::regclass ORDER BY tgname;

-- ---------------------------------------------------------------------------
-- every action, as the application's principal
-- ---------------------------------------------------------------------------
-- the secret values never appear in a statement (nor, hence, in a log line
-- that quotes one)
CREATE TEMP TABLE secret AS
SELECT 'pw-' || md5(random()::text) AS pw, 'pw-' || md5(random()::text) AS pw2,
	   'tk-' || md5(random()::text) AS token, 'mail-' || md5(random()::text) AS mail;
GRANT SELECT ON secret TO PUBLIC;
SET ROLE regress_cap_app;
INSERT INTO capapp.account
SELECT 1, 'cap-a', 'alice', s.mail, s.pw, s.token, 'likes tea', '2024-01-01', 1.50,
	   '{"lang": "en", "dark": true}', ARRAY['a', 'b']
  FROM secret s;
INSERT INTO capapp.account (id, tenant, login) VALUES (2, 'cap-a', 'bob'), (3, 'cap-b', 'carol');
UPDATE capapp.account SET login = 'alice2', score = 1.5 WHERE id = 1;	-- 1.50 -> 1.5 is a change
UPDATE capapp.account SET notes = 'likes coffee' WHERE id = 1;			-- excluded: nothing
UPDATE capapp.account SET login = login WHERE id = 1;					-- no change: nothing
UPDATE capapp.account SET password = (SELECT pw2 FROM secret) WHERE id = 1;	-- "password changed"
UPDATE capapp.account SET prefs = prefs || '{"dark": false}', tags = tags || 'c'::text WHERE id = 1;
DELETE FROM capapp.account WHERE id = 2;
RESET ROLE;

SELECT n, tenant, category, action, resource_type, resource_id, resource_name, previous_state, new_state
  FROM cap WHERE resource_type = 'USER' ORDER BY n;
-- actor: the application's principal, who also is the access
SELECT count(*) AS events, count(*) FILTER (WHERE e.actor = :'app_p' AND e.access = :'app_p'
											AND e.actor_type = 'app') AS by_app
  FROM custos.events e WHERE e.id > :start_id AND e.resource_type = 'USER';

-- ---------------------------------------------------------------------------
-- secrets: the password change is recorded as a change, its values nowhere:
-- not in the decrypted events, not in the stored rows or blocks, not in the
-- server log
-- ---------------------------------------------------------------------------
SELECT resource_id, previous_state, new_state FROM cap
 WHERE previous_state ? 'password' AND action = 'UPDATE';
SELECT custos.seal() >= 0 AS sealed;
SELECT count(*) AS decrypted_leaks
  FROM custos.events e, secret s, unnest(ARRAY[s.pw, s.pw2, s.token, s.mail]) v
 WHERE e.id > :start_id
   AND concat(e.previous_state::text, e.new_state::text, e.metadata::text, e.description,
			  e.resource_id, e.resource_name) LIKE '%' || v || '%';
SELECT count(*) AS stored_leaks
  FROM custos.event_log e, secret s, unnest(ARRAY[s.pw, s.pw2, s.token, s.mail]) v
 WHERE e.id > :start_id
   AND (position(convert_to(v, 'UTF8') IN e.personal) > 0
		OR concat_ws('|', e.tenant, e.resource_id, e.resource_name, e.target_name) LIKE '%' || v || '%');
SELECT count(*) AS chain_leaks
  FROM custos.block b, secret s, unnest(ARRAY[s.pw, s.pw2, s.token, s.mail]) v
 WHERE position(convert_to(v, 'UTF8') IN b.leaves) > 0;
-- the temporary instance's server log (pg_regress writes it to its output directory)
SELECT length(pg_read_file(current_setting('data_directory') || '/../../log/postmaster.log')) > 0 AS log_read,
	   count(*) AS log_leaks
  FROM secret s, unnest(ARRAY[s.pw, s.pw2, s.token, s.mail]) v
 WHERE strpos(pg_read_file(current_setting('data_directory') || '/../../log/postmaster.log'), v) > 0;
-- the deny-list is a superuser setting
SHOW custos.capture_deny_columns;
SET ROLE regress_cap_app;
SELECT pg_temp.try($$SET custos.capture_deny_columns = ''$$);
RESET ROLE;

-- ---------------------------------------------------------------------------
-- visibility: the tenant's audit reader sees the events, an outsider none
-- ---------------------------------------------------------------------------
SET ROLE regress_cap_wc;
SELECT action, resource_id, new_state ->> 'login' AS login
  FROM custos.events WHERE resource_type = 'USER' ORDER BY id;
SET ROLE regress_cap_out;
SELECT count(*) AS outsider_sees FROM custos.events WHERE resource_type = 'USER' AND tenant = 'cap-a';
SELECT action, resource_id FROM custos.events WHERE resource_type = 'USER' ORDER BY id;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- transactions: a rolled-back change leaves no event; a change and a
-- custos.log() append in one transaction are both kept, in order
-- ---------------------------------------------------------------------------
SELECT max(id) AS mark FROM custos.event_log \gset
BEGIN;
INSERT INTO capapp.account (id, tenant, login) VALUES (10, 'cap-a', 'ghost');
UPDATE capapp.account SET login = 'ghost2' WHERE id = 10;
ROLLBACK;
SELECT count(*) AS after_rollback FROM custos.event_log WHERE id > :mark;
BEGIN;
INSERT INTO capapp.account (id, tenant, login) VALUES (11, 'cap-a', 'dave');
SELECT custos.log('{"tenant": "cap-a", "action": "EXPORT", "resource_type": "USER", "resource_id": "11"}') > 0 AS logged;
UPDATE capapp.account SET login = 'dave2' WHERE id = 11;
COMMIT;
SELECT action, resource_id, e.actor = 'role:' || current_user AS actor_is_superuser_role
  FROM custos.events e WHERE id > :mark ORDER BY id;
-- a failed statement records nothing either
SELECT max(id) AS mark FROM custos.event_log \gset
SELECT pg_temp.try($$INSERT INTO capapp.account (id, tenant, login) VALUES (12, 'cap-a', 'x'), (11, 'cap-a', 'dup')$$);
SELECT count(*) AS after_failed_statement FROM custos.event_log WHERE id > :mark;
-- a row without a tenant cannot be recorded: the write is refused
CREATE TABLE capapp.loose (id int PRIMARY KEY, tenant text);
SELECT custos.track('capapp.loose', 'OBJECT', 'tenant');
SELECT pg_temp.try($$INSERT INTO capapp.loose VALUES (1, NULL)$$);
-- nor a row whose target level column holds a value outside the list (rolled
-- back: the table and its TRACK event would show in the listings below)
BEGIN;
CREATE TABLE capapp.levelled (id int PRIMARY KEY, tenant text NOT NULL, lvl text);
SELECT custos.track('capapp.levelled', 'OBJECT', 'tenant', target_level_column => 'lvl');
SELECT pg_temp.try($$INSERT INTO capapp.levelled VALUES (1, 'cap-a', 'PLANET')$$);
SELECT count(*) AS levelled_rows FROM capapp.levelled;
ROLLBACK;

-- ---------------------------------------------------------------------------
-- TRUNCATE: one event of the installation
-- ---------------------------------------------------------------------------
CREATE TABLE capapp.scratch (id int PRIMARY KEY, tenant text NOT NULL);
SELECT custos.track('capapp.scratch', 'OBJECT', 'tenant');
INSERT INTO capapp.scratch SELECT g, 'cap-a' FROM generate_series(1, 3) g;
SELECT max(id) AS mark FROM custos.event_log \gset
TRUNCATE capapp.scratch;
SELECT tenant, action, resource_type, resource_id, description, metadata
  FROM custos.events WHERE id > :mark ORDER BY id;

-- ---------------------------------------------------------------------------
-- keys: composite keys; tables without a primary key
-- ---------------------------------------------------------------------------
CREATE TABLE capapp.setting (scheme text, setting_key text, tenant text NOT NULL, value text,
							 PRIMARY KEY (scheme, setting_key));
SELECT custos.track('capapp.setting', 'CAMERA_SETTINGS', 'tenant', resource_name_column => 'setting_key');
SELECT max(id) AS mark FROM custos.event_log \gset
INSERT INTO capapp.setting VALUES ('SchemeA', 'brightness', 'cap-a', '60');
UPDATE capapp.setting SET value = '75' WHERE scheme = 'SchemeA';
UPDATE capapp.setting SET setting_key = 'contrast' WHERE scheme = 'SchemeA';
SELECT action, resource_id, resource_name, previous_state, new_state
  FROM custos.events WHERE id > :mark ORDER BY id;

CREATE TABLE capapp.nopk (code text NOT NULL, tenant text NOT NULL, v int);
SELECT pg_temp.try($$SELECT custos.track('capapp.nopk', 'OBJECT', 'tenant')$$);
\set VERBOSITY default
SELECT custos.track('capapp.nopk', 'OBJECT', 'tenant');
\set VERBOSITY terse
-- a unique, not-null key named explicitly works; anything less does not
SELECT pg_temp.try($$SELECT custos.track('capapp.nopk', 'OBJECT', 'tenant', key_columns => ARRAY['code'])$$);
CREATE UNIQUE INDEX ON capapp.nopk (code);
SELECT pg_temp.try($$SELECT custos.track('capapp.nopk', 'OBJECT', 'tenant', key_columns => ARRAY['v'])$$);
SELECT custos.track('capapp.nopk', 'OBJECT', 'tenant', key_columns => ARRAY['code']);
INSERT INTO capapp.nopk VALUES ('K1', 'cap-a', 1);
UPDATE capapp.nopk SET v = 2;
SELECT action, resource_id, previous_state, new_state
  FROM custos.events WHERE resource_type = 'OBJECT' AND resource_id = 'K1' ORDER BY id;

-- ---------------------------------------------------------------------------
-- columns added, dropped and renamed after tracking
-- ---------------------------------------------------------------------------
SELECT max(id) AS mark FROM custos.event_log \gset
ALTER TABLE capapp.account ADD COLUMN phone text;
UPDATE capapp.account SET phone = '+49 30 123' WHERE id = 1;
-- a renamed redacted column stays redacted, a renamed excluded one excluded
ALTER TABLE capapp.account RENAME COLUMN email TO mail;
ALTER TABLE capapp.account RENAME COLUMN notes TO remark;
UPDATE capapp.account SET mail = 'new@example.com', remark = 'renamed' WHERE id = 1;
-- the resource-name column, renamed, still names the resource
ALTER TABLE capapp.account RENAME COLUMN login TO username;
ALTER TABLE capapp.account DROP COLUMN created;
ALTER TABLE capapp.account DROP COLUMN api_token;
UPDATE capapp.account SET username = 'alice3', score = 2 WHERE id = 1;
-- a new column named like a secret is redacted by the deny-list
ALTER TABLE capapp.account ADD COLUMN recovery_token text;
UPDATE capapp.account SET recovery_token = 'xyzzy' WHERE id = 1;
INSERT INTO capapp.account (id, tenant, username) VALUES (20, 'cap-b', 'erin');
SELECT action, resource_id, resource_name, previous_state, new_state
  FROM custos.events WHERE id > :mark ORDER BY id;
-- without its tenant column a table's changes cannot be recorded: refused
ALTER TABLE capapp.loose DROP COLUMN tenant;
SELECT pg_temp.try($$INSERT INTO capapp.loose VALUES (2)$$);

-- ---------------------------------------------------------------------------
-- tracking twice re-configures (audited with the old configuration);
-- untracking stops capture, audited; capture cannot be switched off otherwise
-- ---------------------------------------------------------------------------
SELECT custos.track('capapp.setting', 'CAMERA_SETTINGS', 'tenant', resource_name_column => 'setting_key',
					actions => '{"INSERT": "ADD", "DELETE": "REMOVE"}', key_in_state => false);
SELECT count(*) AS capture_triggers FROM pg_trigger WHERE tgrelid = 'capapp.setting'::regclass;
SELECT max(id) AS mark FROM custos.event_log \gset
INSERT INTO capapp.setting VALUES ('SchemeA', 'saturation', 'cap-a', '10');
UPDATE capapp.setting SET value = '20' WHERE setting_key = 'saturation';
DELETE FROM capapp.setting WHERE setting_key = 'saturation';
SELECT action, resource_id, previous_state, new_state FROM custos.events WHERE id > :mark ORDER BY id;

SELECT pg_temp.try($$ALTER TABLE capapp.setting DISABLE TRIGGER custos_capture$$);
SELECT pg_temp.try($$ALTER TABLE capapp.setting DISABLE TRIGGER ALL$$);
SELECT pg_temp.try($$ALTER TABLE capapp.setting ENABLE REPLICA TRIGGER custos_capture$$);
-- ALWAYS (fires under session_replication_role = replica too) is stronger: allowed
SELECT pg_temp.try($$ALTER TABLE capapp.setting ENABLE ALWAYS TRIGGER custos_capture_truncate$$);
SELECT pg_temp.try($$DROP TRIGGER custos_capture ON capapp.setting$$);
SELECT pg_temp.try($$DROP TRIGGER custos_capture_truncate ON capapp.setting$$);
SELECT pg_temp.try($$DELETE FROM custos.tracked_table$$);
-- other triggers of a tracked table are the application's business
CREATE FUNCTION capapp.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER app_trigger AFTER INSERT ON capapp.setting FOR EACH ROW EXECUTE FUNCTION capapp.noop();
ALTER TABLE capapp.setting DISABLE TRIGGER app_trigger;
DROP TRIGGER app_trigger ON capapp.setting;

SELECT custos.untrack('capapp.setting');
SELECT count(*) AS capture_triggers FROM pg_trigger WHERE tgrelid = 'capapp.setting'::regclass;
SELECT max(id) AS mark FROM custos.event_log \gset
UPDATE capapp.setting SET value = '99';
SELECT count(*) AS after_untrack FROM custos.event_log WHERE id > :mark;
SELECT pg_temp.try($$SELECT custos.untrack('capapp.setting')$$);
-- dropping a tracked table untracks it
DROP TABLE capapp.scratch;
SELECT relid::text FROM custos.tracked_table ORDER BY 1;

SELECT tenant, category, action, resource_type, resource_id, resource_name,
	   previous_state ->> 'key_in_state' AS old_key_in_state, new_state ->> 'key_in_state' AS new_key_in_state,
	   new_state -> 'actions' AS actions, description
  FROM custos.events WHERE id > :start_id AND category = 'configuration' AND resource_type = 'TABLE'
 ORDER BY id;

-- ---------------------------------------------------------------------------
-- options: no-op UPDATEs recorded on request; constant metadata and a
-- constant target level; a subject column; a savepoint rolled back takes
-- its events with it
-- ---------------------------------------------------------------------------
CREATE TABLE capapp.device (id int PRIMARY KEY, tenant text NOT NULL, label text, fw text, owner_id text);
SELECT custos.track('capapp.device', 'ENDPOINT', 'tenant', category => 'device', record_noop => true,
					subject_column => 'owner_id',
					target_level => 'ENDPOINT', target_name_column => 'label',
					metadata => '{"source": {"value": "provisioning"}, "firmware": "fw", "tenantName": {"tenant": "name"},
								  "limits": {"value": {"max": 3}}}');
SELECT max(id) AS mark FROM custos.event_log \gset
INSERT INTO capapp.device VALUES (1, 'cap-a', 'cam-entrance', '1.4', 'u-42');
UPDATE capapp.device SET fw = fw;
BEGIN;
UPDATE capapp.device SET fw = '1.5';
SAVEPOINT s1;
UPDATE capapp.device SET fw = '9.9';
DELETE FROM capapp.device;
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT action, resource_id, target_level, target_name, previous_state, new_state, metadata
  FROM custos.events WHERE id > :mark ORDER BY id;
-- the subject column makes the device's owner the events' data subject
-- (erasing u-42 erases these events' personal fields)
SELECT e.action, e.subject, l.subject_key_id IS NOT NULL AS subject_keyed
  FROM custos.events e JOIN custos.event_log l USING (id) WHERE e.id > :mark ORDER BY e.id;

-- the deny-list applies from the next write after it changes (superuser)
SELECT max(id) AS mark FROM custos.event_log \gset
SET custos.capture_deny_columns = 'label';
UPDATE capapp.device SET label = 'cam-lobby';
RESET custos.capture_deny_columns;
UPDATE capapp.device SET label = 'cam-hall';
SELECT action, previous_state, new_state FROM custos.events WHERE id > :mark ORDER BY id;
-- an event that cannot be written refuses the write (fail closed): too large
SET custos.max_event_bytes = 1024;
SELECT pg_temp.try($$UPDATE capapp.device SET fw = repeat('x', 2000)$$);
RESET custos.max_event_bytes;
SELECT fw FROM capapp.device;

-- ---------------------------------------------------------------------------
-- bulk: one statement changing 100k rows records 100k events
-- ---------------------------------------------------------------------------
CREATE TABLE capapp.bulk (id int PRIMARY KEY, tenant text NOT NULL, v int NOT NULL, label text);
SELECT custos.track('capapp.bulk', 'OBJECT', 'tenant');
SELECT max(id) AS mark FROM custos.event_log \gset
INSERT INTO capapp.bulk SELECT g, CASE WHEN g % 2 = 0 THEN 'cap-a' ELSE 'cap-b' END, g, 'row ' || g
  FROM generate_series(1, 100000) g;
UPDATE capapp.bulk SET v = v + 1;
SELECT action, tenant, count(*) FROM custos.event_log WHERE id > :mark GROUP BY 1, 2 ORDER BY 1, 2;
SELECT previous_state, new_state FROM custos.events WHERE id > :mark AND action = 'UPDATE' AND resource_id = '77777';
SELECT custos.seal() >= 0 AS sealed;
SELECT tenant, ok, failure FROM custos.verify() WHERE tenant IN ('cap-a', 'cap-b') ORDER BY 1;

SELECT custos.set_taxonomy_mode('open');
