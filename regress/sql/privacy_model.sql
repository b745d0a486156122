-- privacy_model: tenants form a tree, principals belong to tenants, rights
-- are granted per tenant by its owner or admins, within strict limits, and
-- privacy decisions belong to the tenant's own owner.  Every administrative
-- act is an audit event of the tenant concerned.
\set VERBOSITY terse
-- the shared helpers: labels for random ids, try(), attempt()
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixtures :abs_srcdir '/fixtures/labels.psql'
\i :fixtures
-- the superuser's name depends on who runs the tests
INSERT INTO labels VALUES ('role:' || current_user, 'role:superuser');

-- a role without a principal of its own, for sessions that authenticate
-- with tokens
CREATE ROLE regress_pm_client;
CREATE ROLE regress_pm_super SUPERUSER;
CREATE ROLE regress_pm_bypass BYPASSRLS;
SELECT custos.seal() >= 0 AS flushed;

-- ---------------------------------------------------------------------------
-- The tree: a reseller with customers, a group below a customer, and an
-- unrelated tenant.  Top-level tenants are the superuser's.
-- ---------------------------------------------------------------------------
SELECT custos.create_tenant('pm-rs', NULL, 'Reseller');
SELECT custos.create_tenant('pm-c2', 'pm-rs', 'Customer 2');
SELECT custos.create_tenant('pm-other', NULL, 'Unrelated');
SELECT custos.create_principal('pm-rs', 'Rita Reseller', 'user', 'admin') AS rs_admin \gset
SELECT custos.create_principal('pm-rs', 'Rob Reseller', 'user', 'member') AS rs_member \gset
SELECT custos.create_principal('pm-c2', 'Cleo Owner', 'user', 'owner') AS c2_owner \gset
SELECT custos.create_principal('pm-other', 'Otto Owner', 'user', 'owner') AS other_owner \gset
INSERT INTO labels VALUES (:'rs_admin', 'rs_admin'), (:'rs_member', 'rs_member'),
	(:'c2_owner', 'c2_owner'), (:'other_owner', 'other_owner');
SELECT token_id AS rs_admin_tid, token AS rs_admin_tok FROM custos.issue_token(:'rs_admin') \gset
SELECT token_id AS rs_member_tid, token AS rs_member_tok FROM custos.issue_token(:'rs_member') \gset
SELECT token_id AS c2_owner_tid, token AS c2_owner_tok FROM custos.issue_token(:'c2_owner') \gset
SELECT token_id AS other_owner_tid, token AS other_owner_tok FROM custos.issue_token(:'other_owner') \gset
INSERT INTO labels VALUES (:'rs_admin_tid', 'tok(rs_admin)'), (:'rs_member_tid', 'tok(rs_member)'),
	(:'c2_owner_tid', 'tok(c2_owner)'), (:'other_owner_tid', 'tok(other_owner)');

INSERT INTO labels VALUES ('p_0000000000000000', 'p_unknown');
-- the superuser's own limits
SELECT pg_temp.try($$SELECT custos.create_tenant('pm-rs')$$) AS duplicate_tenant;
SELECT pg_temp.try($$SELECT custos.create_tenant('-pm')$$) AS bad_tenant_id;
SELECT pg_temp.try($$SELECT custos.create_tenant('pm-x', 'pm-nowhere')$$) AS unknown_parent;
SELECT pg_temp.try($$SELECT custos.create_principal('pm-rs', 'X', 'robot', 'member')$$) AS bad_kind;
SELECT pg_temp.try($$SELECT custos.create_principal('pm-rs', 'X', 'user', 'king')$$) AS bad_role;
SELECT pg_temp.try($$SELECT custos.create_principal('pm-nowhere', 'X')$$) AS unknown_tenant;
-- a mapped role must be subject to row-level security
SELECT pg_temp.try($$SELECT custos.create_principal('pm-rs', 'X', 'app', 'member', 'regress_pm_super')$$) AS map_superuser;
SELECT pg_temp.try($$SELECT custos.create_principal('pm-rs', 'X', 'app', 'member', 'regress_pm_bypass')$$) AS map_bypassrls;
SELECT pg_temp.try($$SELECT custos.create_principal('pm-rs', 'X', 'app', 'member', 'regress_pm_nobody')$$) AS map_unknown_role;

-- ---------------------------------------------------------------------------
-- The reseller admin sets up a customer and its owner; the owner adds a
-- member and a group.
-- ---------------------------------------------------------------------------
SET ROLE regress_pm_client;
BEGIN;
SELECT pg_temp.l(custos.authenticate(:'rs_admin_tok')->>'principal') AS authenticated;
SELECT custos.create_tenant('pm-c1', 'pm-rs', 'Customer 1');
SELECT custos.create_principal('pm-c1', 'Owen Owner', 'user', 'owner') AS c1_owner \gset
-- only a superuser creates top-level tenants or maps database roles
SELECT pg_temp.try($$SELECT custos.create_tenant('pm-top')$$) AS top_level;
SELECT pg_temp.try($$SELECT custos.create_tenant('pm-x', 'pm-other')$$) AS below_unrelated;
SELECT pg_temp.try($$SELECT custos.create_principal('pm-c1', 'X', 'app', 'member', 'regress_pm_client')$$) AS map_role;
SELECT pg_temp.try(format('SELECT custos.create_principal(%L, %L)', 'pm-other', 'X')) AS principal_elsewhere;
COMMIT;
INSERT INTO labels VALUES (:'c1_owner', 'c1_owner');
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS authenticated;
SELECT token_id AS c1_owner_tid, token AS c1_owner_tok FROM custos.issue_token(:'c1_owner', label => 'first login') \gset
COMMIT;
INSERT INTO labels VALUES (:'c1_owner_tid', 'tok(c1_owner)');

BEGIN;
SELECT pg_temp.l(custos.authenticate(:'c1_owner_tok')->>'principal') AS authenticated;
SELECT custos.create_principal('pm-c1', 'Wendy Works', 'user', 'member') AS c1_member \gset
SELECT custos.create_principal('pm-c1', 'Mia Member', 'user', 'member') AS c1_member2 \gset
SELECT custos.create_tenant('pm-c1-g', 'pm-c1', 'Customer 1, site A');
SELECT custos.create_principal('pm-c1-g', 'Gina Group Owner', 'user', 'owner') AS g_owner \gset
-- the customer's owner administers its subtree only
SELECT pg_temp.try($$SELECT custos.create_tenant('pm-x', 'pm-rs')$$) AS above_itself;
SELECT pg_temp.try($$SELECT custos.create_principal('pm-c2', 'X')$$) AS sibling;
COMMIT;
INSERT INTO labels VALUES (:'c1_member', 'c1_member'), (:'c1_member2', 'c1_member2'), (:'g_owner', 'g_owner');
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS authenticated;
SELECT token_id AS c1_member_tid, token AS c1_member_tok FROM custos.issue_token(:'c1_member') \gset
SELECT token_id AS g_owner_tid, token AS g_owner_tok FROM custos.issue_token(:'g_owner') \gset
COMMIT;
INSERT INTO labels VALUES (:'c1_member_tid', 'tok(c1_member)'), (:'g_owner_tid', 'tok(g_owner)');

-- a member administers nothing; it may issue a token for itself
BEGIN;
SELECT custos.authenticate(:'c1_member_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try($$SELECT custos.create_tenant('pm-x', 'pm-c1')$$) AS member_creates_tenant;
SELECT pg_temp.try($$SELECT custos.create_principal('pm-c1', 'X')$$) AS member_creates_principal;
SELECT pg_temp.try(format('SELECT custos.issue_token(%L)', :'c1_member2')) AS member_issues_for_other;
SELECT pg_temp.try(format('SELECT custos.disable_principal(%L)', :'c1_member2')) AS member_disables_other;
SELECT token_id AS c1_member_tid2 FROM custos.issue_token(:'c1_member', 'personal', '1 hour', 'own second token') \gset
COMMIT;
INSERT INTO labels VALUES (:'c1_member_tid2', 'tok2(c1_member)');
RESET ROLE;

SELECT t.id, t.parent, t.name, t.privacy_mode FROM custos.tenant t WHERE t.id LIKE 'pm-%' ORDER BY t.id;
SELECT pg_temp.l(p.id) AS principal, p.tenant, p.kind, p.role, p.name, p.db_role, p.disabled_at IS NULL AS active
  FROM custos.principal p WHERE p.tenant LIKE 'pm-%' ORDER BY p.tenant, p.name;

-- ---------------------------------------------------------------------------
-- Rights
-- ---------------------------------------------------------------------------
SET ROLE regress_pm_client;
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS authenticated;
-- a works council member gets audit.read on the customer
SELECT custos.grant_right('pm-c1', :'c1_member', 'audit.read') AS wc_grant \gset
-- the reseller admin gets audit.export on the customer from its owner
SELECT custos.grant_right('pm-c1', :'rs_admin', 'audit.export') AS export_grant \gset
-- refusals
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'c1_owner', 'audit.read')) AS self_grant;
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'c2_owner', 'audit.read')) AS grantee_of_sibling;
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'other_owner', 'audit.read')) AS grantee_unrelated;
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'c1_member', 'audit.everything')) AS unknown_right;
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', 'p_0000000000000000', 'audit.read')) AS unknown_principal;
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c2', :'c1_member', 'audit.read')) AS on_sibling_tenant;
-- a group below the customer: its principals may not be granted rights on the customer
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'g_owner', 'audit.read')) AS grantee_below;
-- data.read: time-limited, to a principal of a tenant above
SELECT pg_temp.try(format('SELECT custos.grant_access(%L, %L, NULL)', 'pm-c1', :'rs_admin')) AS data_read_forever;
SELECT pg_temp.try(format('SELECT custos.grant_access(%L, %L, now() - interval %L)', 'pm-c1', :'rs_admin', '1 minute')) AS data_read_past;
SELECT pg_temp.try(format('SELECT custos.grant_access(%L, %L, now() + interval %L)', 'pm-c1', :'c1_member', '1 day')) AS data_read_own_member;
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'rs_member', 'data.read')) AS data_read_via_grant_right;
SELECT custos.grant_access('pm-c1', :'rs_member', now() + interval '1 day') AS data_grant \gset
-- privacy.manage: to the customer's own principals only
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'rs_admin', 'privacy.manage')) AS privacy_manage_to_reseller;
SELECT custos.grant_right('pm-c1', :'c1_member2', 'privacy.manage') AS manage_grant \gset
COMMIT;

-- the reseller admin administers the customer, but its privacy decisions
-- are the owner's
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS authenticated;
SELECT custos.grant_right('pm-c1', :'c1_member2', 'audit.read') AS rs_grant \gset
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'rs_admin', 'audit.read')) AS self_grant;
SELECT pg_temp.try(format('SELECT custos.grant_access(%L, %L, now() + interval %L)', 'pm-c1', :'rs_member', '1 day')) AS grant_data_read;
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L, now() + interval %L)', 'pm-c1', :'rs_member', 'data.read', '1 day')) AS grant_data_read_2;
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'c1_member', 'privacy.manage')) AS grant_privacy_manage;
SELECT pg_temp.try($$SELECT custos.set_privacy_mode('pm-c1', true)$$) AS switch_privacy_mode;
SELECT pg_temp.try(format('SELECT custos.revoke_right(%s)', :data_grant)) AS revoke_data_read;
SELECT pg_temp.try(format('SELECT custos.revoke_right(%s)', :manage_grant)) AS revoke_privacy_manage;
COMMIT;

-- a member grants nothing, revokes nothing of others
BEGIN;
SELECT custos.authenticate(:'c1_member_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'c1_member2', 'audit.export')) AS member_grants;
SELECT pg_temp.try(format('SELECT custos.revoke_right(%s)', :rs_grant)) AS member_revokes;
SELECT pg_temp.try($$SELECT custos.set_privacy_mode('pm-c1', true)$$) AS member_switches;
COMMIT;

-- privacy mode: the owner, or its own principals holding privacy.manage
BEGIN;
SELECT custos.authenticate(:'c2_owner_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try($$SELECT custos.set_privacy_mode('pm-c1', true)$$) AS other_owner_switches;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS authenticated;
-- the group has an owner of its own
SELECT pg_temp.try($$SELECT custos.set_privacy_mode('pm-c1-g', true)$$) AS owner_above_switches_group;
SELECT pg_temp.try($$SELECT custos.set_privacy_mode('pm-nowhere', true)$$) AS unknown_tenant;
COMMIT;
-- The owner's first token was issued by the reseller at onboarding, who
-- could act as the owner with it and lift privacy mode again: switching it
-- on needs a token the owner issued itself.  The reseller still knows that
-- first token, and can mint a token in the owner's name with it before the
-- owner switches: such a token must not survive the switch either.
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS reseller_as_owner;
SELECT token_id AS backdoor_tid, token AS backdoor_tok
  FROM custos.issue_token(:'c1_owner', label => 'minted by the reseller') \gset
COMMIT;
INSERT INTO labels VALUES (:'backdoor_tid', 'backdoor(c1_owner)');
BEGIN;
SELECT custos.authenticate(:'c1_owner_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try($$SELECT custos.set_privacy_mode('pm-c1', true)$$) AS on_with_resellers_token;
SELECT token_id AS c1_owner_own_tid, token AS c1_owner_own_tok
  FROM custos.issue_token(:'c1_owner', label => 'own token') \gset
COMMIT;
INSERT INTO labels VALUES (:'c1_owner_own_tid', 'own(c1_owner)');
BEGIN;
SELECT pg_temp.l(custos.authenticate(:'c1_owner_own_tok')->>'token') AS authenticated;
SELECT custos.set_privacy_mode('pm-c1', true);
COMMIT;
-- the token the reseller issued for the owner is revoked with that, and so
-- is every token issued through it (whoever held it could have issued
-- them): the backdoor, and the tokens the owner issued for its member and
-- its group's owner while still using the reseller's token.  The owner's
-- own token, now vouched for, keeps working and issues new ones.
BEGIN;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'c1_owner_tok')) AS resellers_token_for_owner;
ROLLBACK;
BEGIN;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'backdoor_tok')) AS minted_by_reseller_for_owner;
ROLLBACK;
BEGIN;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'c1_member_tok')) AS issued_through_resellers_token;
ROLLBACK;
BEGIN;
SELECT custos.authenticate(:'c1_owner_own_tok') IS NOT NULL AS authenticated;
SELECT token_id AS c1_member_tid, token AS c1_member_tok FROM custos.issue_token(:'c1_member') \gset
SELECT token_id AS g_owner_tid, token AS g_owner_tok FROM custos.issue_token(:'g_owner') \gset
COMMIT;
INSERT INTO labels VALUES (:'c1_member_tid', 'reissued(c1_member)'), (:'g_owner_tid', 'reissued(g_owner)');
BEGIN;
SELECT pg_temp.l(custos.authenticate(:'c1_member_tok')->>'token') AS owners_new_token_for_member;
ROLLBACK;
RESET ROLE;
-- c1_member2 holds privacy.manage; its first token is the superuser's
SELECT token AS c1_member2_tok, token_id AS c1_member2_tid FROM custos.issue_token(:'c1_member2') \gset
INSERT INTO labels VALUES (:'c1_member2_tid', 'tok(c1_member2)');
SET ROLE regress_pm_client;
BEGIN;
SELECT custos.authenticate(:'c1_member2_tok') IS NOT NULL AS authenticated;
-- switching off needs no token of one's own, switching on does
SELECT custos.set_privacy_mode('pm-c1', false);
SELECT pg_temp.try($$SELECT custos.set_privacy_mode('pm-c1', true)$$) AS on_with_superusers_token;
SELECT token_id AS c1_member2_own_tid, token AS c1_member2_own_tok FROM custos.issue_token(:'c1_member2') \gset
COMMIT;
INSERT INTO labels VALUES (:'c1_member2_own_tid', 'own(c1_member2)');
BEGIN;
SELECT pg_temp.l(custos.authenticate(:'c1_member2_own_tok')->>'token') AS authenticated;
SELECT custos.set_privacy_mode('pm-c1', true);
COMMIT;
-- the group's owner got its token from the customer's owner, above the group
BEGIN;
SELECT custos.authenticate(:'g_owner_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try($$SELECT custos.set_privacy_mode('pm-c1-g', true)$$) AS on_with_customer_owners_token;
SELECT token_id AS g_owner_own_tid, token AS g_owner_own_tok FROM custos.issue_token(:'g_owner') \gset
COMMIT;
INSERT INTO labels VALUES (:'g_owner_own_tid', 'own(g_owner)');
BEGIN;
SELECT pg_temp.l(custos.authenticate(:'g_owner_own_tok')->>'token') AS authenticated;
SELECT custos.set_privacy_mode('pm-c1-g', true);
SELECT pg_temp.try($$SELECT custos.set_privacy_mode('pm-c1', false)$$) AS group_owner_switches_parent;
COMMIT;
BEGIN;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'g_owner_tok')) AS customer_owners_token_for_group_owner;
ROLLBACK;
RESET ROLE;
SELECT id, privacy_mode FROM custos.tenant WHERE id LIKE 'pm-%' ORDER BY id;
-- who issued each token, and which ones switching privacy mode on revoked:
-- those of principals inside a private tenant issued from outside it
SELECT pg_temp.l(t.id) AS token, pg_temp.l(t.principal) AS principal, p.tenant,
       pg_temp.l(t.issued_by) AS issued_by, t.revoked_at IS NOT NULL AS revoked
  FROM custos.token t JOIN custos.principal p ON p.id = t.principal
 WHERE p.tenant LIKE 'pm-%'
 ORDER BY t.created_at;

-- While the customer is in privacy mode, the reseller admin must not be able
-- to become one of its principals: a token of the customer's owner or
-- members would switch privacy mode off or read the protected data.
SET ROLE regress_pm_client;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.attempt(format('SELECT custos.issue_token(%L)', :'c1_member')) AS token_for_customer_member;
SELECT pg_temp.attempt(format('SELECT custos.issue_token(custos.create_principal(%L, %L, %L, %L))',
                              'pm-c1', 'Back Door', 'user', 'owner')) AS token_for_new_owner;
SELECT pg_temp.try(format('SELECT custos.issue_token(%L)', :'c1_owner')) AS token_for_customer_owner;
-- nor of a tenant below the private one (created, and undone, on the spot)
SELECT pg_temp.try(format('SELECT custos.issue_token(custos.create_principal(custos.create_tenant(%L, %L), %L))',
                          'pm-c1-h', 'pm-c1', 'Hidden Hand')) AS token_below_private_tenant;
-- tokens of its own tenant and of a customer not in privacy mode it still issues
SELECT pg_temp.attempt(format('SELECT custos.issue_token(%L)', :'rs_member')) AS token_for_own_member;
SELECT pg_temp.attempt(format('SELECT custos.issue_token(%L)', :'c2_owner')) AS token_for_other_customer;
-- the names of the customer's principals are personal data: hidden from the
-- reseller like the rest of the private customer's personal fields
SELECT e.tenant, pg_temp.l(e.resource_id) AS principal, e.resource_name,
       e.new_state ->> 'name' AS name, e.personal_data
  FROM custos.events e
 WHERE e.tenant IN ('pm-c1', 'pm-c1-g', 'pm-c2') AND e.action = 'CREATE' AND e.resource_type = 'PRINCIPAL'
 ORDER BY e.id;
COMMIT;
-- the customer's owner, inside the customer, no longer issues tokens for the
-- group below, which has switched privacy mode on itself
BEGIN;
SELECT custos.authenticate(:'c1_owner_own_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try(format('SELECT custos.issue_token(%L)', :'g_owner')) AS owner_above_issues_for_group;
SELECT pg_temp.attempt(format('SELECT custos.issue_token(%L)', :'c1_member')) AS owner_issues_for_member;
SELECT e.tenant, pg_temp.l(e.resource_id) AS principal, e.new_state ->> 'name' AS name, e.personal_data
  FROM custos.events e
 WHERE e.tenant IN ('pm-c1', 'pm-c1-g') AND e.action = 'CREATE' AND e.resource_type = 'PRINCIPAL'
 ORDER BY e.id;
COMMIT;

-- revoking: the grantee may give a right up; owner-only rights are revoked
-- by the owner; nothing twice
BEGIN;
SELECT custos.authenticate(:'c1_member2_own_tok') IS NOT NULL AS authenticated;
SELECT custos.revoke_right(:rs_grant);
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c1_owner_own_tok') IS NOT NULL AS authenticated;
SELECT custos.revoke_right(:data_grant);
SELECT pg_temp.attempt(format('SELECT custos.revoke_right(%s)', :data_grant)) AS revoke_twice;
SELECT pg_temp.try('SELECT custos.revoke_right(-1)') AS revoke_unknown;
-- disabling a principal
SELECT custos.disable_principal(:'c1_member2');
COMMIT;
RESET ROLE;

SELECT g.tenant, pg_temp.l(g.principal) AS principal, g.right_name, pg_temp.l(g.granted_by) AS granted_by,
       g.expires_at IS NOT NULL AS expires, g.revoked_at IS NOT NULL AS revoked, pg_temp.l(g.revoked_by) AS revoked_by
  FROM custos.right_grant g WHERE g.tenant LIKE 'pm-%' ORDER BY g.id;
-- a disabled principal keeps nothing: no new rights, no tokens
SELECT pg_temp.try(format('SELECT custos.grant_right(%L, %L, %L)', 'pm-c1', :'c1_member2', 'audit.read')) AS grant_to_disabled;
SELECT pg_temp.try(format('SELECT custos.issue_token(%L)', :'c1_member2')) AS token_for_disabled;

-- ---------------------------------------------------------------------------
-- Every administrative act above is an audit event of the tenant concerned,
-- with the acting principal and token; refused acts left nothing.  A
-- principal's name is personal data: in new_state (CREATE) and
-- previous_state (DISABLE), encrypted, never in resource_name.
-- ---------------------------------------------------------------------------
SELECT custos.seal() > 0 AS sealed;
SELECT e.tenant, e.action, e.resource_type,
       CASE WHEN e.resource_type = 'RIGHT' THEN '(grant)' ELSE pg_temp.l(e.resource_id) END AS resource,
       e.resource_name, pg_temp.l(e.actor) AS actor, e.actor_type, pg_temp.l(e.access) AS access,
       pg_temp.l(coalesce(e.new_state, e.previous_state) ->> 'principal') AS about,
       coalesce(e.new_state, e.previous_state) ->> 'name' AS name
  FROM custos.events e
 WHERE e.tenant LIKE 'pm-%' AND e.category = 'privacy'
 ORDER BY e.id;

-- ---------------------------------------------------------------------------
-- Every SECURITY DEFINER function of custos pins its search_path, with
-- pg_temp last, so that no caller's objects can stand in for built-ins.
-- ---------------------------------------------------------------------------
SELECT p.oid::regprocedure AS security_definer_function,
       coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false) AS search_path_pinned
  FROM pg_proc p
 WHERE p.pronamespace = 'custos'::regnamespace AND p.prosecdef
 ORDER BY p.proname COLLATE "C";

DROP ROLE regress_pm_client, regress_pm_super, regress_pm_bypass;
