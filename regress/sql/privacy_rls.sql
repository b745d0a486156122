-- privacy_rls: row-level security on the audit log.  Nobody sees another
-- tenant's events; an app token sees only its own actions; personal tokens
-- and mapped roles see the tenants their principal may read; a works
-- council member with audit.read sees personal fields; a reseller sees a
-- customer's events but not their personal fields while the customer is in
-- privacy mode, unless the owner grants data.read, until a time.  Callers
-- without a principal see nothing and append nothing; principals append
-- only within their subtree and only as themselves unless audit.write_as.
\set VERBOSITY terse
-- the shared helpers: labels for random ids, try(), attempt()
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixtures :abs_srcdir '/fixtures/labels.psql'
\i :fixtures
-- the superuser's name depends on who runs the tests
INSERT INTO labels VALUES ('role:' || current_user, 'role:superuser');

CREATE ROLE regress_rl_client;
CREATE ROLE regress_rl_owner;
CREATE ROLE regress_rl_writer;
SELECT custos.seal() >= 0 AS flushed;

SELECT custos.create_tenant('rl-rs', NULL, 'Reseller');
SELECT custos.create_tenant('rl-c1', 'rl-rs', 'Customer 1');
SELECT custos.create_tenant('rl-c1-g', 'rl-c1', 'Customer 1, site');
SELECT custos.create_tenant('rl-c2', 'rl-rs', 'Customer 2');
SELECT custos.create_tenant('rl-other', NULL, 'Unrelated');
SELECT custos.create_principal('rl-rs', 'Rita Reseller', 'user', 'admin') AS rs_admin \gset
SELECT custos.create_principal('rl-rs', 'Rob Reseller', 'user', 'member') AS rs_member \gset
SELECT custos.create_principal('rl-c1', 'Owen Owner', 'user', 'owner', 'regress_rl_owner') AS c1_owner \gset
SELECT custos.create_principal('rl-c1', 'Wendy Works', 'user', 'member') AS c1_wc \gset
SELECT custos.create_principal('rl-c1', 'Booking app', 'app', 'member') AS c1_app \gset
SELECT custos.create_principal('rl-c1', 'Gateway', 'app', 'member', 'regress_rl_writer') AS c1_writer \gset
SELECT custos.create_principal('rl-c2', 'Cleo Owner', 'user', 'owner') AS c2_owner \gset
SELECT custos.create_principal('rl-other', 'Otto Owner', 'user', 'owner') AS other_owner \gset
INSERT INTO labels VALUES (:'rs_admin', 'rs_admin'), (:'rs_member', 'rs_member'), (:'c1_owner', 'c1_owner'),
	(:'c1_wc', 'c1_wc'), (:'c1_app', 'c1_app'), (:'c1_writer', 'c1_writer'), (:'c2_owner', 'c2_owner'),
	(:'other_owner', 'other_owner');
SELECT token_id AS rs_admin_tid, token AS rs_admin_tok FROM custos.issue_token(:'rs_admin') \gset
SELECT token AS rs_member_tok FROM custos.issue_token(:'rs_member') \gset
-- the customer's tokens come from its owner (acting by its mapped role), so
-- that switching privacy mode on below leaves them valid
SET ROLE regress_rl_owner;
SELECT token AS c1_owner_tok FROM custos.issue_token(:'c1_owner') \gset
SELECT token_id AS c1_wc_tid, token AS c1_wc_tok FROM custos.issue_token(:'c1_wc') \gset
SELECT token_id AS app1_tid, token AS app1_tok FROM custos.issue_token(:'c1_app', 'app', '1 day', 'app 1') \gset
SELECT token_id AS app2_tid, token AS app2_tok FROM custos.issue_token(:'c1_app', 'app', '1 day', 'app 2') \gset
SELECT token_id AS shared_tid, token AS shared_tok FROM custos.issue_token(:'c1_app', 'shared', '1 day', 'shared') \gset
SELECT token AS c1_app_personal_tok FROM custos.issue_token(:'c1_app', 'personal', '1 day', 'personal') \gset
RESET ROLE;
SELECT token AS c2_owner_tok FROM custos.issue_token(:'c2_owner') \gset
SELECT token AS other_owner_tok FROM custos.issue_token(:'other_owner') \gset
INSERT INTO labels VALUES (:'rs_admin_tid', 'tok(rs_admin)'), (:'c1_wc_tid', 'tok(c1_wc)'), (:'app1_tid', 'tok(app 1)'), (:'app2_tid', 'tok(app 2)'), (:'shared_tid', 'tok(shared)');
SELECT custos.grant_right('rl-c1', :'c1_wc', 'audit.read') > 0 AS works_council_granted;
SELECT custos.grant_right('rl-c1', :'c1_writer', 'audit.write_as') > 0 AS write_as_granted;

-- one event with personal fields in each tenant
SELECT count(*) AS seeded FROM custos.log_batch($$[
	{"tenant": "rl-rs", "action": "SEED", "actor": "u-rs", "actor_name": "Rita", "subject": "s-rs"},
	{"tenant": "rl-c1", "action": "SEED", "actor": "u-c1", "actor_name": "Carl", "subject": "cam-1",
	 "description": "watched camera 1", "source_ip": "198.51.100.1"},
	{"tenant": "rl-c1-g", "action": "SEED", "actor": "u-g", "actor_name": "Gert", "subject": "cam-9"},
	{"tenant": "rl-c2", "action": "SEED", "actor": "u-c2", "actor_name": "Cleo", "subject": "s-c2"},
	{"tenant": "rl-other", "action": "SEED", "actor": "u-o", "actor_name": "Otto", "subject": "s-o"}
]$$);

-- what a caller sees of the test's events (administrative and READ events left out)
CREATE FUNCTION pg_temp.seen() RETURNS TABLE (tenant text, action text, actor text, actor_name text,
                                               subject text, source_ip inet, access text, personal_data text)
LANGUAGE sql AS $$
	SELECT e.tenant, e.action, pg_temp.l(e.actor), e.actor_name, e.subject, e.source_ip,
	       pg_temp.l(e.access), e.personal_data
	  FROM custos.events e
	 WHERE e.tenant LIKE 'rl-%' AND e.action IN ('SEED', 'APP', 'NOTE', 'ON_BEHALF')
	 ORDER BY e.id
$$;
GRANT EXECUTE ON FUNCTION pg_temp.seen() TO PUBLIC;
-- a leaky function: cheap, not leakproof, and it tells what it sees
CREATE FUNCTION pg_temp.peek(text, text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS $$
BEGIN
	RAISE NOTICE 'peek: % %', $1, $2;
	RETURN true;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.peek(text, text) TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Appending: only principals, only within their subtree, only as themselves
-- ---------------------------------------------------------------------------
SET ROLE regress_rl_client;
\set VERBOSITY default
SELECT custos.log('{"tenant": "rl-c1", "action": "NOTE"}');
\set VERBOSITY terse
SELECT count(*) AS appended FROM custos.log_batch('[]');
-- app tokens: two of them, one principal
BEGIN;
SELECT custos.authenticate(:'app1_tok') IS NOT NULL AS app1;
SELECT count(*) AS appended FROM custos.log_batch('[{"tenant": "rl-c1", "action": "APP"}, {"tenant": "rl-c1-g", "action": "APP"}]');
COMMIT;
BEGIN;
SELECT custos.authenticate(:'app2_tok') IS NOT NULL AS app2;
SELECT custos.log('{"tenant": "rl-c1", "action": "APP"}') > 0 AS appended;
COMMIT;
-- the works council member: its own tenant only, and as itself only
BEGIN;
SELECT custos.authenticate(:'c1_wc_tok') IS NOT NULL AS c1_wc;
SELECT custos.log('{"tenant": "rl-c1", "action": "NOTE"}') > 0 AS own_tenant;
SELECT custos.log('{"tenant": "rl-c1-g", "action": "NOTE"}') > 0 AS tenant_below;
SELECT custos.log(jsonb_build_object('tenant', 'rl-c1', 'action', 'NOTE', 'actor', :'c1_wc')) > 0 AS as_itself;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "rl-rs", "action": "NOTE"}')$$) AS tenant_above;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "rl-c2", "action": "NOTE"}')$$) AS sibling;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "rl-other", "action": "NOTE"}')$$) AS unrelated;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "rl-nowhere", "action": "NOTE"}')$$) AS unknown_tenant;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "rl-c1", "action": "NOTE", "actor": "u-c1"}')$$) AS as_someone_else;
SELECT pg_temp.try(format('SELECT custos.log(%L)', jsonb_build_object('tenant', 'rl-c1', 'action', 'NOTE', 'actor', :'c1_owner'))) AS as_its_owner;
-- a batch is refused as a whole
SELECT pg_temp.try($$SELECT custos.log_batch('[{"tenant": "rl-c1", "action": "NOTE"}, {"tenant": "rl-c2", "action": "NOTE"}]')$$) AS batch;
COMMIT;
RESET ROLE;
-- the gateway's role holds audit.write_as: it logs on behalf of its users
SET ROLE regress_rl_writer;
SELECT custos.log('{"tenant": "rl-c1", "action": "ON_BEHALF", "actor": "u-c1", "actor_name": "Carl"}') > 0 AS on_behalf;
SELECT custos.log('{"tenant": "rl-c1-g", "action": "ON_BEHALF", "actor": "u-g"}') > 0 AS on_behalf_below;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "rl-c2", "action": "ON_BEHALF", "actor": "u-c2"}')$$) AS on_behalf_elsewhere;
RESET ROLE;
-- and the reseller admin may append for its customers
SET ROLE regress_rl_client;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS rs_admin;
SELECT custos.log('{"tenant": "rl-c2", "action": "NOTE"}') > 0 AS for_customer;
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "rl-other", "action": "NOTE"}')$$) AS unrelated;
COMMIT;
RESET ROLE;

-- every append records its caller as "access", and the principal as actor
-- unless the caller may say otherwise
SELECT * FROM pg_temp.seen();
SELECT custos.seal() > 0 AS sealed;

-- ---------------------------------------------------------------------------
-- Reading, privacy mode off
-- ---------------------------------------------------------------------------
SET ROLE regress_rl_client;
-- no principal: nothing
SELECT count(*) AS events, (SELECT count(*) FROM custos.event_log) AS event_log,
       (SELECT count(*) FROM custos.data_key) AS data_keys, (SELECT count(*) FROM custos.block) AS blocks
  FROM custos.events;
-- a reseller member without rights: nothing either
BEGIN;
SELECT custos.authenticate(:'rs_member_tok') IS NOT NULL AS rs_member;
SELECT count(*) AS events FROM custos.events;
COMMIT;
-- the reseller admin: its own tenant and its customers', all in clear
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS rs_admin;
SELECT * FROM pg_temp.seen();
SELECT array_agg(DISTINCT tenant ORDER BY tenant) AS block_tenants FROM custos.block;
COMMIT;
-- the customer's owner, by token and by its mapped role: the customer and its group
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS c1_owner;
SELECT * FROM pg_temp.seen();
COMMIT;
RESET ROLE;
SET ROLE regress_rl_owner;
SELECT tenant, action, actor, personal_data FROM pg_temp.seen();
RESET ROLE;
SET ROLE regress_rl_client;
-- the works council member, with audit.read on the customer
BEGIN;
SELECT custos.authenticate(:'c1_wc_tok') IS NOT NULL AS c1_wc;
SELECT tenant, action, actor, actor_name, subject, personal_data FROM pg_temp.seen();
COMMIT;
-- app tokens: each its own actions only, personal fields included
BEGIN;
SELECT custos.authenticate(:'app1_tok') IS NOT NULL AS app1;
SELECT tenant, action, actor, access, personal_data FROM pg_temp.seen();
COMMIT;
BEGIN;
SELECT custos.authenticate(:'app2_tok') IS NOT NULL AS app2;
SELECT tenant, action, actor, access, personal_data FROM pg_temp.seen();
COMMIT;
-- a shared token of the same app appended nothing, so sees nothing
BEGIN;
SELECT custos.authenticate(:'shared_tok') IS NOT NULL AS shared;
SELECT count(*) AS events FROM pg_temp.seen();
COMMIT;
-- the app's personal token: a member without audit.read reads nothing
BEGIN;
SELECT custos.authenticate(:'c1_app_personal_tok') IS NOT NULL AS app_personal;
SELECT count(*) AS events FROM pg_temp.seen();
COMMIT;
-- the gateway's mapped role: a member without audit.read, nothing
RESET ROLE;
SET ROLE regress_rl_writer;
SELECT count(*) AS events FROM pg_temp.seen();
RESET ROLE;
SET ROLE regress_rl_client;
-- the other customers: their own tenant only
BEGIN;
SELECT custos.authenticate(:'c2_owner_tok') IS NOT NULL AS c2_owner;
SELECT tenant, action, actor, personal_data FROM pg_temp.seen();
COMMIT;
BEGIN;
SELECT custos.authenticate(:'other_owner_tok') IS NOT NULL AS other_owner;
SELECT tenant, action, actor, personal_data FROM pg_temp.seen();
-- nor do other tenants' rows reach a leaky function in a WHERE clause
SELECT count(*) AS peeked FROM custos.events e WHERE pg_temp.peek(e.tenant, e.action) AND e.action = 'SEED';
SELECT count(*) AS peeked FROM custos.event_log e WHERE pg_temp.peek(e.tenant, e.resource_type) AND e.action = 'SEED';
COMMIT;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Privacy mode on: the reseller keeps the events, loses their personal
-- fields (the customer's group included); the customer's own principals
-- keep everything
-- ---------------------------------------------------------------------------
SET ROLE regress_rl_client;
-- while privacy mode is off, the reseller admin may issue tokens for the
-- customer's principals
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS rs_admin;
SELECT token AS rs_for_wc_tok FROM custos.issue_token(:'c1_wc', label => 'from the reseller') \gset
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS c1_owner;
SELECT custos.set_privacy_mode('rl-c1', true);
COMMIT;
-- switching on revoked the reseller's token; those the owner issued work
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'rs_for_wc_tok')) AS resellers_token_for_wc;
SELECT pg_temp.l(custos.authenticate(:'c1_wc_tok') ->> 'token') AS owners_token_for_wc;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS rs_admin;
SELECT tenant, action, actor, actor_name, subject, source_ip, personal_data FROM pg_temp.seen();
SELECT array_agg(DISTINCT tenant ORDER BY tenant) AS key_tenants FROM custos.data_key;
SELECT array_agg(DISTINCT tenant ORDER BY tenant) AS block_tenants FROM custos.block;
SELECT pg_temp.l((custos.access_info() -> 'personal_tenants')::text) AS personal_tenants;
-- nor can it issue new ones now, for the customer or its group
SELECT pg_temp.attempt(format('SELECT custos.issue_token(%L)', :'c1_wc')) AS token_for_customer;
SELECT pg_temp.attempt(format('SELECT custos.issue_token(custos.create_principal(%L, %L))', 'rl-c1-g', 'Group user')) AS token_for_group;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c1_wc_tok') IS NOT NULL AS c1_wc;
SELECT tenant, action, actor, actor_name, subject, personal_data FROM pg_temp.seen();
COMMIT;
RESET ROLE;
SET ROLE regress_rl_owner;
SELECT tenant, action, actor, actor_name, personal_data FROM pg_temp.seen();
RESET ROLE;

-- the owner lets the reseller admin see, until a time
SET ROLE regress_rl_client;
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS c1_owner;
SELECT custos.grant_access('rl-c1', :'rs_admin', now() + interval '1 hour') AS access_grant \gset
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS rs_admin;
SELECT tenant, action, actor, actor_name, subject, personal_data FROM pg_temp.seen() WHERE tenant LIKE 'rl-c1%';
COMMIT;
-- another reseller principal is not covered by that grant
BEGIN;
SELECT custos.authenticate(:'rs_member_tok') IS NOT NULL AS rs_member;
SELECT count(*) AS events FROM custos.events;
COMMIT;
RESET ROLE;
-- time passes: the grant expires (moved into the past, as superuser)
UPDATE custos.right_grant SET expires_at = now() - interval '1 minute' WHERE id = :access_grant;
SET ROLE regress_rl_client;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS rs_admin;
SELECT tenant, action, actor, actor_name, subject, personal_data FROM pg_temp.seen() WHERE tenant LIKE 'rl-c1%';
COMMIT;
-- a new grant, revoked by the owner before it expires
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS c1_owner;
SELECT custos.grant_access('rl-c1', :'rs_admin', now() + interval '1 hour') AS access_grant \gset
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS rs_admin;
SELECT DISTINCT personal_data AS while_granted FROM pg_temp.seen() WHERE tenant = 'rl-c1';
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS c1_owner;
SELECT custos.revoke_right(:access_grant);
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS rs_admin;
SELECT DISTINCT personal_data AS after_revoke FROM pg_temp.seen() WHERE tenant = 'rl-c1';
COMMIT;
-- privacy mode off again: the reseller sees everything again
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS c1_owner;
SELECT custos.set_privacy_mode('rl-c1', false);
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS rs_admin;
SELECT tenant, action, actor, actor_name, subject, personal_data FROM pg_temp.seen() WHERE tenant LIKE 'rl-c1%';
SELECT pg_temp.attempt(format('SELECT custos.issue_token(%L)', :'c1_wc')) AS token_for_customer_again;
COMMIT;
RESET ROLE;

-- the switches and grants are events of the customer
SELECT custos.seal() > 0 AS sealed;
SELECT e.action, e.resource_name, pg_temp.l(e.actor) AS actor, pg_temp.l(e.new_state ->> 'principal') AS grantee
  FROM custos.events e
 WHERE e.tenant = 'rl-c1' AND e.category = 'privacy' AND e.action IN ('PRIVACY_MODE_ON', 'PRIVACY_MODE_OFF', 'GRANT', 'REVOKE')
 ORDER BY e.id;

SELECT custos.seal() >= 0 AS flushed;
SELECT custos.disable_principal(:'c1_owner');
SELECT custos.disable_principal(:'c1_writer');
DROP ROLE regress_rl_client, regress_rl_owner, regress_rl_writer;
