-- identity: who is calling is decided by custos.authenticate() (a token)
-- or by the database role the session acts as (principal.db_role), never
-- by a setting.  SET and set_config() of any custom setting change nothing;
-- SET ROLE to an unmapped role leaves no principal; a mapped role acts as
-- its principal without a token; a SECURITY DEFINER function owned by a
-- mapped role does not lend its owner's principal to its callers.
\set VERBOSITY terse
-- the shared helpers: labels for random ids, try(), attempt()
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixtures :abs_srcdir '/fixtures/labels.psql'
\i :fixtures
-- the superuser's name depends on who runs the tests
INSERT INTO labels VALUES ('role:' || current_user, 'role:superuser');

CREATE ROLE regress_id_admin;
CREATE ROLE regress_id_app;
CREATE ROLE regress_id_nobody LOGIN;
CREATE ROLE regress_id_app_member;
GRANT regress_id_app TO regress_id_app_member;
CREATE SCHEMA regress_id;
GRANT USAGE, CREATE ON SCHEMA regress_id TO regress_id_admin, regress_id_nobody;
GRANT USAGE ON SCHEMA regress_id TO PUBLIC;

SELECT custos.seal() >= 0 AS flushed;
SELECT custos.create_tenant('id-a', NULL, 'Identity A');
SELECT custos.create_tenant('id-b', NULL, 'Identity B');
SELECT custos.create_principal('id-a', 'Ada Admin', 'user', 'admin', 'regress_id_admin') AS admin \gset
SELECT custos.create_principal('id-a', 'Sensor app', 'app', 'member', 'regress_id_app') AS app \gset
SELECT custos.create_principal('id-b', 'Bob Owner', 'user', 'owner') AS b_owner \gset
INSERT INTO labels VALUES (:'admin', 'admin'), (:'app', 'app'), (:'b_owner', 'b_owner');
SELECT token AS b_tok, token_id AS b_tid FROM custos.issue_token(:'b_owner') \gset
INSERT INTO labels VALUES (:'b_tid', 'tok(b_owner)');
SELECT custos.log('{"tenant": "id-a", "action": "SEED", "actor": "u-1", "actor_name": "Ursula"}') > 0 AS seeded;
SELECT custos.log('{"tenant": "id-b", "action": "SEED", "actor": "u-2", "actor_name": "Berta"}') > 0 AS seeded;
SELECT current_user AS superuser \gset

-- ---------------------------------------------------------------------------
-- A mapped role acts as its principal without a token; SET ROLE decides
-- ---------------------------------------------------------------------------
SET ROLE regress_id_admin;
SELECT pg_temp.l(custos.current_principal()) AS principal, pg_temp.l(custos.current_access()) AS access,
       custos.sees_all_actions() AS sees_all;
SELECT pg_temp.l((custos.access_info() - 'personal_tenants' - 'data_tenants')::text) AS who;
SELECT tenant, action, actor, actor_name, personal_data FROM custos.events WHERE action = 'SEED' ORDER BY id;
SELECT custos.log('{"tenant": "id-a", "action": "BY_ROLE"}') AS by_role_id \gset
SET ROLE regress_id_nobody;
SELECT custos.current_principal() AS principal, count(*) AS events FROM custos.events;
SET ROLE regress_id_app;
SELECT pg_temp.l(custos.current_principal()) AS principal, pg_temp.l(custos.current_access()) AS access;
-- an app member without audit.read reads no events
SELECT count(*) AS events FROM custos.events;
SET ROLE regress_id_admin;
SELECT pg_temp.l(custos.current_principal()) AS principal_again;
RESET ROLE;
-- the superuser itself has no principal; its appends record its role
SELECT custos.current_principal() AS superuser_principal, custos.current_access() AS superuser_access;
-- SET SESSION AUTHORIZATION counts like SET ROLE
SET SESSION AUTHORIZATION regress_id_app;
SELECT pg_temp.l(custos.current_principal()) AS principal;
RESET SESSION AUTHORIZATION;
-- membership in a mapped role: acting as it takes SET ROLE, inheritance alone is not enough
SET ROLE regress_id_app_member;
SELECT custos.current_principal() AS inherited_principal;
SET ROLE regress_id_app;
SELECT pg_temp.l(custos.current_principal()) AS principal_after_set_role;
RESET ROLE;
-- within a transaction, a token takes precedence over the mapping
SET ROLE regress_id_admin;
BEGIN;
SELECT custos.authenticate(:'b_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.l(custos.current_principal()) AS principal, pg_temp.l(custos.current_access()) AS access;
COMMIT;
SELECT pg_temp.l(custos.current_principal()) AS principal_after_commit;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- SECURITY DEFINER functions: custos looks at the session's role, not at the
-- function's owner
-- ---------------------------------------------------------------------------
SET ROLE regress_id_admin;
CREATE FUNCTION regress_id.as_admin_whoami() RETURNS text LANGUAGE sql SECURITY DEFINER
	AS $$SELECT coalesce(custos.current_principal(), '(none)')$$;
CREATE FUNCTION regress_id.as_admin_events() RETURNS bigint LANGUAGE sql SECURITY DEFINER
	AS $$SELECT count(*) FROM custos.events$$;
CREATE FUNCTION regress_id.as_admin_log() RETURNS bigint LANGUAGE sql SECURITY DEFINER
	AS $$SELECT custos.log('{"tenant": "id-a", "action": "VIA_DEFINER"}')$$;
CREATE FUNCTION regress_id.as_admin_grant(p text) RETURNS bigint LANGUAGE sql SECURITY DEFINER
	AS $$SELECT custos.grant_right('id-a', p, 'audit.read')$$;
CREATE FUNCTION regress_id.as_admin_set_role() RETURNS text LANGUAGE plpgsql SECURITY DEFINER
	AS $$BEGIN PERFORM set_config('role', 'regress_id_admin', true); RETURN custos.current_principal(); END$$;
GRANT EXECUTE ON FUNCTION regress_id.as_admin_whoami(), regress_id.as_admin_events(), regress_id.as_admin_log(),
	regress_id.as_admin_grant(text), regress_id.as_admin_set_role() TO PUBLIC;
-- the owner itself, for comparison
SELECT pg_temp.l(regress_id.as_admin_whoami()) AS owner_calls, regress_id.as_admin_events() > 0 AS owner_reads;
SET ROLE regress_id_nobody;
SELECT regress_id.as_admin_whoami() AS whoami, regress_id.as_admin_events() AS events;
SELECT pg_temp.try('SELECT regress_id.as_admin_log()') AS log;
SELECT pg_temp.try(format('SELECT regress_id.as_admin_grant(%L)', :'app')) AS grant_right;
SELECT pg_temp.try('SELECT regress_id.as_admin_set_role()') AS set_role_inside;
-- a function owned by an unmapped role, called by the mapped app: the app
CREATE FUNCTION regress_id.as_nobody_whoami() RETURNS text LANGUAGE sql SECURITY DEFINER
	AS $$SELECT coalesce(custos.current_principal(), '(none)')$$;
GRANT EXECUTE ON FUNCTION regress_id.as_nobody_whoami() TO PUBLIC;
SET ROLE regress_id_app;
SELECT pg_temp.l(regress_id.as_nobody_whoami()) AS whoami;
RESET ROLE;

-- a disabled principal's role acts as nobody from then on
SELECT custos.disable_principal(:'app');
SET ROLE regress_id_app;
SELECT custos.current_principal() AS disabled_app, count(*) AS events FROM custos.events;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "id-a", "action": "AFTER_DISABLE"}')$$) AS log;
RESET ROLE;

-- The mapping is by role OID, not by name: a mapped role can be dropped, and
-- a role created again under the same name is another role that acts as
-- nobody until a superuser maps it to a principal of its own.
CREATE ROLE regress_id_reborn;
SELECT custos.create_principal('id-a', 'Reborn app', 'app', 'member', 'regress_id_reborn') AS reborn \gset
INSERT INTO labels VALUES (:'reborn', 'reborn');
SET ROLE regress_id_reborn;
SELECT pg_temp.l(custos.current_principal()) AS mapped;
RESET ROLE;
DROP ROLE regress_id_reborn;
CREATE ROLE regress_id_reborn;
SET ROLE regress_id_reborn;
SELECT custos.current_principal() AS same_name_new_role, count(*) AS events FROM custos.events;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "id-a", "action": "REBORN"}')$$) AS log;
RESET ROLE;
SELECT pg_temp.l(p.id) AS principal, p.db_role,
       p.db_role_oid = 'regress_id_reborn'::regrole::oid AS maps_the_new_role
  FROM custos.principal p WHERE p.id = :'reborn';
SELECT custos.create_principal('id-a', 'Reborn app, again', 'app', 'member', 'regress_id_reborn') AS reborn2 \gset
INSERT INTO labels VALUES (:'reborn2', 'reborn2');
SET ROLE regress_id_reborn;
SELECT pg_temp.l(custos.current_principal()) AS mapped_again;
RESET ROLE;
SELECT custos.disable_principal(:'reborn');
SELECT custos.disable_principal(:'reborn2');
DROP ROLE regress_id_reborn;

-- what was appended, by whom: only the mapped admin's own event
SELECT custos.seal() > 0 AS sealed;
SELECT e.tenant, e.action, pg_temp.l(e.actor) AS actor, e.actor_type, pg_temp.l(e.access) AS access
  FROM custos.events e
 WHERE e.tenant IN ('id-a', 'id-b') AND e.category IS DISTINCT FROM 'access'
   AND e.action NOT IN ('CREATE', 'ISSUE', 'SEED')
 ORDER BY e.id;

-- ---------------------------------------------------------------------------
-- Settings are no identity.  A session of its own as an unmapped login role:
-- the superuser session of the test could SET ROLE to anyone.
-- ---------------------------------------------------------------------------
\c - regress_id_nobody
\set VERBOSITY terse
SELECT current_user, session_user;
-- custos' own prefix is reserved: no custom setting can be made up there
SET custos.principal = :'admin';
SELECT set_config('custos.principal', :'admin', false);
SET custos.tenant = 'id-a';
SET custos.access = 'role:postgres';
-- settings elsewhere are accepted, and ignored
SELECT set_config('request.jwt.claims', json_build_object('sub', :'admin', 'role', 'owner', 'tenant', 'id-a')::text, false) IS NOT NULL AS jwt_claims;
SELECT set_config('request.jwt.claim.sub', :'admin', false) IS NOT NULL AS jwt_sub;
SET app.principal = :'admin';
SET app.tenant = 'id-a';
SET app.db_role = 'regress_id_admin';
SELECT custos.current_principal() AS principal, custos.current_access() AS access,
       custos.sees_all_actions() AS sees_all, custos.visible_tenants() AS visible,
       custos.data_tenants() AS data;
SELECT count(*) AS events FROM custos.events;
SELECT custos.log('{"tenant": "id-a", "action": "FORGED"}');
SELECT custos.set_privacy_mode('id-a', true);
-- the same settings local to a transaction
BEGIN;
SELECT set_config('request.jwt.claim.sub', :'admin', true) IS NOT NULL AS local_sub;
SET LOCAL app.principal = 'admin';
SELECT custos.current_principal() AS principal, count(*) AS events FROM custos.events;
COMMIT;
-- with a token, the token decides, not the settings
BEGIN;
SELECT custos.authenticate(:'b_tok') ->> 'tenant' AS authenticated_for;
SELECT array_agg(DISTINCT tenant) AS tenants FROM custos.events;
COMMIT;
-- nor can this role become another one
SET ROLE regress_id_admin;
SET SESSION AUTHORIZATION regress_id_admin;
SELECT set_config('role', 'regress_id_admin', false);
SELECT set_config('session_authorization', 'regress_id_admin', false);
SELECT custos.current_principal() AS principal, current_user;
\c - :superuser
\set VERBOSITY terse

-- leave no read event queued
SELECT custos.seal() >= 0 AS flushed;
SELECT custos.disable_principal(:'admin');
DROP SCHEMA regress_id CASCADE;
DROP ROLE regress_id_admin, regress_id_app, regress_id_nobody, regress_id_app_member;
