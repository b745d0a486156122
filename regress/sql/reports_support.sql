-- reports_support: the support report (seed 001).  What a vendor's support
-- needs, without personal data and without a secret: the test plants
-- secrets and personal values everywhere a report could pick them up, then
-- searches the text of each default report for every one of them.  With
-- personal data: only the tenant's own owner, with a reason, recorded.
\set VERBOSITY terse
-- the shared helpers: labels for random ids, l(), try_detail() (the
-- refusals' details are the spec), attempt()
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixtures :abs_srcdir '/fixtures/labels.psql'
\i :fixtures
INSERT INTO labels VALUES ('role:' || current_user, 'role:superuser');
CREATE ROLE regress_sp_client;
SELECT custos.seal() >= 0 AS flushed;

SELECT custos.create_tenant('sp-rs', NULL, 'Support Reseller');
SELECT custos.create_tenant('sp-c', 'sp-rs', 'Support Customer');
SELECT custos.create_principal('sp-c', 'Paula Planted-Principal', 'user', 'owner') AS c_owner \gset
SELECT custos.create_principal('sp-c', 'Adam Admin', 'user', 'admin') AS c_admin \gset
SELECT custos.create_principal('sp-c', 'Mia Member', 'user', 'member') AS c_member \gset
SELECT custos.create_principal('sp-rs', 'Rita Reseller', 'user', 'admin') AS rs_admin \gset
SELECT custos.create_principal('custos-system', 'Ops Operator', 'user', 'admin') AS ops \gset
INSERT INTO labels VALUES (:'c_owner', 'c_owner'), (:'c_admin', 'c_admin'), (:'c_member', 'c_member'),
	(:'rs_admin', 'rs_admin'), (:'ops', 'ops');
SELECT token_id AS c_owner_tid, token AS c_owner_tok FROM custos.issue_token(:'c_owner') \gset
SELECT token AS c_owner_app_tok FROM custos.issue_token(:'c_owner', 'app') \gset
SELECT token_id AS c_admin_tid, token AS c_admin_tok FROM custos.issue_token(:'c_admin') \gset
SELECT token AS c_member_tok FROM custos.issue_token(:'c_member') \gset
SELECT token AS rs_admin_tok FROM custos.issue_token(:'rs_admin') \gset
SELECT token AS ops_tok FROM custos.issue_token(:'ops') \gset
INSERT INTO labels VALUES (:'c_owner_tid', 'tok(c_owner)'), (:'c_admin_tid', 'tok(c_admin)');

-- ---------------------------------------------------------------------------
-- Plant secrets and personal values
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE planted (what text PRIMARY KEY, value text NOT NULL, personal boolean NOT NULL);
GRANT SELECT ON planted TO PUBLIC;
-- a token secret (only its hash is stored), and that hash
INSERT INTO planted VALUES ('token secret', :'c_owner_tok', false);
INSERT INTO planted SELECT 'token secret hash', encode(secret_hash, 'hex'), false FROM custos.token WHERE id = :'c_owner_tid';
-- the installation secret, in hex and base64
INSERT INTO planted SELECT 'installation secret (hex)', encode(secret, 'hex'), false FROM custos.installation ORDER BY created_at LIMIT 1;
INSERT INTO planted SELECT 'installation secret (base64)', encode(secret, 'base64'), false FROM custos.installation ORDER BY created_at LIMIT 1;
-- a password in an application table under custos' policies
CREATE TABLE sp_accounts (tenant text NOT NULL, login text NOT NULL, password text NOT NULL);
SELECT custos.protect('sp_accounts', 'tenant', 'user accounts');
INSERT INTO sp_accounts VALUES ('sp-c', 'alice', 'pw-table-Planted-1');
INSERT INTO planted VALUES ('password in a protected table', 'pw-table-Planted-1', false);
-- a login role's password
CREATE ROLE regress_sp_pw LOGIN PASSWORD 'rolepw-Planted-5';
INSERT INTO planted VALUES ('role password', 'rolepw-Planted-5', false);
INSERT INTO planted SELECT 'role password hash', rolpassword, false FROM pg_authid WHERE rolname = 'regress_sp_pw';
-- conninfo passwords in settings: a session setting, a database setting, a
-- server setting (primary_conninfo, reloaded)
SET sp_app.conninfo = 'host=db user=app password=conninfo-Planted-3';
ALTER DATABASE custos_regress SET sp_app.dsn = 'postgresql://app:dsn-Planted-4@db/app';
SET sp_app.dsn = 'postgresql://app:dsn-Planted-4@db/app';
ALTER SYSTEM SET primary_conninfo = 'host=primary user=rep password=primary-Planted-6';
SELECT pg_reload_conf();
-- (applied by the time the reports are made: checked there)
SELECT current_setting('sp_app.conninfo') LIKE '%conninfo-Planted-3%' AS session_setting_planted;
INSERT INTO planted VALUES ('conninfo password (session setting)', 'conninfo-Planted-3', false),
	('dsn password (database setting)', 'dsn-Planted-4', false),
	('conninfo password (primary_conninfo)', 'primary-Planted-6', false);
-- custos' own prefix is reserved: nothing can be planted there
SELECT pg_temp.try_detail($$SET custos.conninfo = 'password=x'$$) AS custos_prefix;
-- personal values in events: personal fields, a password in a state, and
-- the clear columns that may still name people (resource, target)
SELECT count(*) AS logged FROM custos.log_batch($$[
 {"tenant": "sp-c", "category": "login", "action": "LOGIN", "outcome": "failure",
  "actor": "alice.planted@example.org", "actor_name": "Alice Planted", "source_ip": "203.0.113.77",
  "user_agent": "UA-Planted/1.0", "description": "wrong password for Alice Planted",
  "new_state": {"password": "pw-event-Planted-2"}},
 {"tenant": "sp-c", "category": "booking", "action": "UPDATE", "outcome": "denied",
  "actor": "alice.planted@example.org", "subject": "subject-planted-42",
  "resource_type": "BOOKING", "resource_id": "rid-planted-7", "resource_name": "Booking of Alice Planted",
  "target_level": "ENDPOINT", "target_name": "Desk of Alice Planted",
  "metadata": {"note": "meta-Planted-8"}},
 {"tenant": "sp-c", "category": "booking", "action": "CREATE",
  "actor": "alice.planted@example.org", "subject": "subject-planted-42", "resource_type": "BOOKING"}
]$$);
INSERT INTO planted VALUES ('password in an event', 'pw-event-Planted-2', true),
	('actor', 'alice.planted@example.org', true), ('actor name', 'Alice Planted', true),
	('source ip', '203.0.113.77', true), ('user agent', 'UA-Planted', true),
	('subject', 'subject-planted-42', true), ('resource id', 'rid-planted-7', true),
	('metadata', 'meta-Planted-8', true), ('principal name', 'Paula Planted-Principal', true);
-- data keys and their scope references
SELECT custos.seal() > 0 AS sealed;
INSERT INTO planted SELECT 'data key ' || key_id, encode(key, 'hex'), false FROM custos.data_key WHERE key IS NOT NULL;
INSERT INTO planted SELECT 'scope ref ' || key_id, encode(scope_ref, 'hex'), false FROM custos.data_key;
SELECT count(*) > 3 AS keys_planted FROM planted WHERE what LIKE 'data key %';

-- a scan: how many planted values a text contains
CREATE FUNCTION pg_temp.scan(report text, personal boolean)
	RETURNS TABLE (what text, found boolean) LANGUAGE sql AS $$
	SELECT CASE WHEN p.what ~ '^(data key|scope ref) ' THEN regexp_replace(p.what, '[0-9]+$', '*') ELSE p.what END,
	       bool_or(position(p.value in report) > 0)
	  FROM pg_temp.planted p WHERE p.personal = $2 OR $2 IS NULL
	 GROUP BY 1 ORDER BY 1
$$;
GRANT EXECUTE ON FUNCTION pg_temp.scan(text, boolean) TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Who may
-- ---------------------------------------------------------------------------
SET ROLE regress_sp_client;
SELECT pg_temp.try_detail($$SELECT custos.support_report()$$) AS no_principal;
BEGIN;
SELECT custos.authenticate(:'c_member_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.support_report(false, 'sp-c')$$) AS member;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c_admin_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.support_report()$$) AS admin_installation;
SELECT pg_temp.try_detail($$SELECT custos.support_report(false, 'sp-rs')$$) AS admin_of_tenant_above;
SELECT pg_temp.try_detail($$SELECT custos.support_report(false, 'sp-nowhere')$$) AS unknown_tenant;
SELECT pg_temp.try_detail($$SELECT custos.support_report(true, 'sp-c', 'ticket 4711')$$) AS admin_with_personal_data;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.support_report(true, 'sp-c', 'ticket 4711')$$) AS reseller_with_personal_data;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c_owner_app_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.support_report(true, 'sp-c', 'ticket 4711')$$) AS owner_app_token;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c_owner_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.support_report(true, 'sp-c')$$) AS owner_without_reason;
SELECT pg_temp.try_detail($$SELECT custos.support_report(true, 'sp-c', ' ')$$) AS owner_blank_reason;
SELECT pg_temp.try_detail($$SELECT custos.support_report(true)$$) AS personal_without_tenant;
COMMIT;
RESET ROLE;
-- the superuser: the installation, but never personal data
SELECT pg_temp.try_detail($$SELECT custos.support_report(true, 'sp-c', 'ticket 4711')$$) AS superuser_with_personal_data;
SELECT count(*) AS report_events FROM custos.event_log
 WHERE resource_type = 'REPORT' AND resource_id = 'support';

-- ---------------------------------------------------------------------------
-- Default reports: the installation (superuser; an operator of
-- custos-system) and one tenant (its admin).  None holds a planted value.
-- ---------------------------------------------------------------------------
-- every setting is in force in this session now
SELECT current_setting('primary_conninfo') LIKE '%primary-Planted-6%' AS primary_conninfo_planted,
       current_setting('sp_app.conninfo') LIKE '%conninfo-Planted-3%' AS session_setting_planted,
       current_setting('sp_app.dsn') LIKE '%dsn-Planted-4%' AS dsn_planted;
CREATE TEMP TABLE reports (who text PRIMARY KEY, doc jsonb);
GRANT SELECT, INSERT ON reports TO PUBLIC;
INSERT INTO reports SELECT 'superuser, installation', custos.support_report();
SET ROLE regress_sp_client;
BEGIN;
SELECT custos.authenticate(:'ops_tok') IS NOT NULL AS authenticated;
INSERT INTO reports SELECT 'operator, installation', custos.support_report();
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c_admin_tok') IS NOT NULL AS authenticated;
INSERT INTO reports SELECT 'admin, tenant', custos.support_report(false, 'sp-c');
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS authenticated;
INSERT INTO reports SELECT 'reseller admin, tenant below', custos.support_report(false, 'sp-c');
COMMIT;
RESET ROLE;
SELECT r.who, s.what, s.found FROM reports r, pg_temp.scan(r.doc::text, NULL) s WHERE s.found;
SELECT r.who, count(*) AS values_searched, count(*) FILTER (WHERE s.found) AS values_found
  FROM reports r, pg_temp.scan(r.doc::text, NULL) s GROUP BY 1 ORDER BY 1;

-- what a default report holds
SELECT who, doc ->> 'report' AS report, doc ->> 'scope' AS scope, doc ->> 'includes_personal_data' AS personal,
       (SELECT string_agg(k, ' ' ORDER BY k) FROM jsonb_object_keys(doc) k) AS sections
  FROM reports ORDER BY who;
SELECT doc -> 'versions' ->> 'custos' AS custos, doc -> 'versions' ->> 'custos_default' AS custos_default,
       doc -> 'versions' ->> 'pgcrypto' IS NOT NULL AS pgcrypto,
       doc -> 'versions' ->> 'postgresql' = current_setting('server_version') AS postgresql
  FROM reports WHERE who = 'admin, tenant';
-- settings: allow-listed; custos' own with their values
SELECT k AS setting, doc -> 'settings' -> k AS value FROM reports, unnest('{custos.sealer, custos.database,
       custos.max_event_bytes, shared_preload_libraries, wal_level, primary_conninfo, sp_app.conninfo,
       sp_app.dsn, listen_addresses, data_directory}'::text[]) k
 WHERE who = 'admin, tenant' ORDER BY k;
SELECT count(*) FILTER (WHERE k LIKE 'custos.%') >= 9 AS custos_settings,
       count(*) FILTER (WHERE k NOT LIKE 'custos.%' AND k NOT LIKE 'cron.%') BETWEEN 20 AND 45 AS server_settings
  FROM reports, jsonb_object_keys(doc -> 'settings') k WHERE who = 'admin, tenant';
-- chains, counts, problems of the tenant report: the tenant and below only
SELECT c ->> 'tenant' AS tenant, c ->> 'ok' AS ok, (c ->> 'events_checked')::int > 0 AS checked,
       c ->> 'pending' AS pending, c ->> 'failure' AS failure
  FROM reports, jsonb_array_elements(doc -> 'chains') c WHERE who = 'admin, tenant';
SELECT jsonb_pretty((doc -> 'counts') - 'events'::text - 'events_by_outcome'::text - 'protected_tables'::text) AS counts FROM reports WHERE who = 'admin, tenant';
SELECT e ->> 'category' AS category, e ->> 'action' AS action, e ->> 'outcome' AS outcome,
       e ->> 'events' AS events, e ->> 'last_24h' AS last_24h
  FROM reports, jsonb_array_elements(doc -> 'recent_problems' -> 'events') e WHERE who = 'admin, tenant';
SELECT j ->> 'tenant' AS tenant, j ->> 'job' AS job, j ->> 'last_outcome' AS last_outcome, j ->> 'backlog' AS backlog
  FROM reports, jsonb_array_elements(doc -> 'jobs') j WHERE who = 'admin, tenant' ORDER BY 1, 2;
-- the installation report covers other tenants too; the reseller's report of
-- the tenant below is the tenant's
SELECT who, (SELECT count(*) FROM jsonb_array_elements(doc -> 'chains')) > 1 AS several_chains,
       (doc -> 'counts' ->> 'tenants')::int AS tenants
  FROM reports WHERE doc ->> 'scope' <> 'installation' ORDER BY who;
SELECT who, (doc -> 'counts' ->> 'tenants')::int >= 3 AS all_tenants,
       (SELECT count(*) FROM jsonb_array_elements(doc -> 'chains') c WHERE c ->> 'tenant' LIKE 'sp-%') AS sp_chains
  FROM reports WHERE doc ->> 'scope' = 'installation' ORDER BY who;

-- ---------------------------------------------------------------------------
-- With personal data: the owner, with a reason; an audit event naming who
-- and why.  Secrets stay out; the personal values it is about are in, which
-- shows that the scan above could have found them.
-- ---------------------------------------------------------------------------
SET ROLE regress_sp_client;
BEGIN;
SELECT custos.authenticate(:'c_owner_tok') IS NOT NULL AS authenticated;
INSERT INTO reports SELECT 'owner, personal data', custos.support_report(true, 'sp-c', 'ticket 4711: logins fail');
COMMIT;
RESET ROLE;
SELECT s.what, s.found FROM reports r, pg_temp.scan(r.doc::text, NULL) s
 WHERE r.who = 'owner, personal data' ORDER BY s.found DESC, s.what;
SELECT doc ->> 'includes_personal_data' AS personal, doc -> 'personal_data' ->> 'reason' AS reason,
       pg_temp.l(doc -> 'personal_data' ->> 'generated_by') AS generated_by,
       jsonb_array_length(doc -> 'personal_data' -> 'recent_problem_events') AS problem_events,
       jsonb_array_length(doc -> 'personal_data' -> 'principals') AS principals
  FROM reports WHERE who = 'owner, personal data';
-- the audit events of the reports: who, which, why
SELECT e.tenant, pg_temp.l(e.actor) AS actor, e.category, e.action, e.resource_type, e.resource_id,
       e.new_state, pg_temp.l(e.access) AS access
  FROM custos.events e, reports r
 WHERE e.id = (r.doc ->> 'report_id')::bigint
 ORDER BY e.id;

-- clean up what other tests would see
ALTER SYSTEM RESET primary_conninfo;
SELECT pg_reload_conf();
ALTER DATABASE custos_regress RESET sp_app.dsn;
RESET sp_app.conninfo;
