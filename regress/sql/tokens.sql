-- tokens: a token is 256 bits of randomness shown once; only its SHA-256 is
-- stored.  It authenticates its principal for one transaction.  Forged,
-- expired, revoked tokens and tokens of disabled principals are refused
-- alike (28000 "invalid token", no oracle); one transaction, one token.
\set VERBOSITY terse
-- the shared helpers: labels for random ids, try(), attempt()
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixtures :abs_srcdir '/fixtures/labels.psql'
\i :fixtures
-- the superuser's name depends on who runs the tests
INSERT INTO labels VALUES ('role:' || current_user, 'role:superuser');

CREATE ROLE regress_tk_client;
SELECT custos.seal() >= 0 AS flushed;
SELECT custos.create_tenant('tk-a', NULL, 'Tokens A');
SELECT custos.create_tenant('tk-b', NULL, 'Tokens B');
SELECT custos.create_principal('tk-a', 'Anna Owner', 'user', 'owner') AS owner \gset
SELECT custos.create_principal('tk-a', 'Max Member', 'user', 'member') AS member \gset
SELECT custos.create_principal('tk-a', 'Camera app', 'app', 'member') AS app \gset
SELECT custos.create_principal('tk-b', 'Bea Owner', 'user', 'owner') AS b_owner \gset
INSERT INTO labels VALUES (:'owner', 'owner'), (:'member', 'member'), (:'app', 'app'), (:'b_owner', 'b_owner');

-- ---------------------------------------------------------------------------
-- Issuing: the secret once, 256 bits of hex behind a prefix; the default
-- lifetime is 90 days, at most a year
-- ---------------------------------------------------------------------------
SELECT token_id AS owner_tid, token AS owner_tok, expires_at AS owner_exp
  FROM custos.issue_token(:'owner', label => 'owner laptop') \gset
INSERT INTO labels VALUES (:'owner_tid', 'tok(owner)');
SELECT :'owner_tok' ~ '^cst_[0-9a-f]{64}$' AS secret_format,
       :'owner_tid' ~ '^tok_[0-9a-f]{16}$' AS id_format,
       position(substr(:'owner_tid', 5) IN :'owner_tok') = 0 AS id_not_part_of_secret,
       :'owner_exp'::timestamptz - now() BETWEEN interval '89 days 23 hours' AND interval '90 days 1 minute' AS ninety_days;
SELECT token_id AS member_tid, token AS member_tok FROM custos.issue_token(:'member') \gset
SELECT token_id AS app_tid, token AS app_tok FROM custos.issue_token(:'app', 'app', '30 days', 'camera') \gset
SELECT token_id AS shared_tid, token AS shared_tok FROM custos.issue_token(:'app', 'shared', '1 day', 'shared link') \gset
SELECT token_id AS b_tid, token AS b_tok FROM custos.issue_token(:'b_owner') \gset
INSERT INTO labels VALUES (:'member_tid', 'tok(member)'), (:'app_tid', 'tok(app)'), (:'shared_tid', 'tok(shared)'),
	(:'b_tid', 'tok(b_owner)');
-- two tokens never share a secret
SELECT count(DISTINCT secret_hash) = count(*) AS distinct_secrets FROM custos.token;
SELECT pg_temp.try(format('SELECT custos.issue_token(%L, %L)', :'member', 'master')) AS unknown_kind;
SELECT pg_temp.try(format('SELECT custos.issue_token(%L, %L, %L)', :'member', 'personal', '367 days')) AS too_long;
SELECT pg_temp.try(format('SELECT custos.issue_token(%L, %L, %L)', :'member', 'personal', '0 seconds')) AS zero_lifetime;
SELECT pg_temp.try(format('SELECT custos.issue_token(%L, %L, %L)', :'member', 'personal', '-1 day')) AS negative_lifetime;
SELECT pg_temp.try(format('SELECT custos.issue_token(%L, %L, NULL)', :'member', 'personal')) AS no_lifetime;
SELECT pg_temp.try($$SELECT custos.issue_token('p_0000000000000000')$$) AS unknown_principal;

-- ---------------------------------------------------------------------------
-- Only the SHA-256 of the secret is stored, and the secret appears nowhere
-- in custos: not in the token table, not in any event (the ISSUE event
-- included), not in any other table of the schema
-- ---------------------------------------------------------------------------
SELECT t.secret_hash = sha256(convert_to(:'owner_tok', 'UTF8')) AS sha256_stored,
       length(t.secret_hash) AS hash_bytes, t.kind, t.label
  FROM custos.token t WHERE t.id = :'owner_tid';
CREATE TEMP TABLE secrets AS
SELECT s FROM unnest(ARRAY[:'owner_tok', :'member_tok', :'app_tok', :'shared_tok', :'b_tok']) s;
-- the full secrets and their random parts, as text and as hex
SELECT c.relname AS relation,
       (SELECT count(*) FROM secrets) AS secrets_checked,
       pg_temp.l(string_agg(DISTINCT r.found, ', ')) AS found
  FROM pg_class c
  LEFT JOIN LATERAL (
       SELECT 'FOUND' AS found FROM secrets s
        WHERE (xpath('/row/n/text()', query_to_xml(format(
                 'SELECT count(*) AS n FROM custos.%I t WHERE t::text LIKE %L OR t::text LIKE %L OR t::text LIKE %L',
                 c.relname, '%' || s.s || '%', '%' || substr(s.s, 5) || '%',
                 '%' || encode(convert_to(s.s, 'UTF8'), 'hex') || '%'), false, false, '')))[1]::text::int > 0) r ON true
 WHERE c.relnamespace = 'custos'::regnamespace AND c.relkind IN ('r', 'v')
 GROUP BY c.relname ORDER BY 1;

-- ---------------------------------------------------------------------------
-- Authenticating: the secret works, for one transaction
-- ---------------------------------------------------------------------------
SET ROLE regress_tk_client;
SELECT custos.current_principal() AS before, custos.current_access() AS access_before;
BEGIN;
SELECT pg_temp.l(custos.authenticate(:'owner_tok')::text) AS authenticated;
SELECT pg_temp.l(custos.current_principal()) AS principal, pg_temp.l(custos.current_access()) AS access;
SELECT pg_temp.l((custos.access_info() - 'audit_tenants' - 'personal_tenants' - 'data_tenants')::text) AS who;
-- the same token again is fine, another one is not
SELECT pg_temp.l(custos.authenticate(:'owner_tok') ->> 'token') AS again;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'member_tok')) AS second_token;
SELECT pg_temp.l(custos.current_principal()) AS still;
COMMIT;
SELECT custos.current_principal() AS after_commit, custos.current_access() AS access_after_commit;
BEGIN;
SELECT pg_temp.l(custos.authenticate(:'member_tok') ->> 'principal') AS authenticated;
ROLLBACK;
SELECT custos.current_principal() AS after_rollback;
-- a statement of its own is a transaction of its own
SELECT pg_temp.l(custos.authenticate(:'app_tok') ->> 'kind') AS authenticated_kind;
SELECT custos.current_principal() AS next_statement;
-- and a prepared transaction takes the caller with it
BEGIN;
SELECT custos.authenticate(:'member_tok') IS NOT NULL AS authenticated;
PREPARE TRANSACTION 'regress_tk_prepared';
SELECT custos.current_principal() AS after_prepare;
RESET ROLE;
COMMIT PREPARED 'regress_tk_prepared';
SET ROLE regress_tk_client;
-- a failed second authentication aborts the transaction, whose caller then
-- ends with it
BEGIN;
SELECT custos.authenticate(:'owner_tok') IS NOT NULL AS authenticated;
SELECT custos.authenticate(:'b_tok') IS NOT NULL AS second;
ROLLBACK;
SELECT custos.current_principal() AS after_refusal;
-- ROLLBACK TO SAVEPOINT undoes an authentication made after the savepoint,
-- and another token may then be used; one made before it stays
BEGIN;
SAVEPOINT s;
SELECT custos.authenticate(:'owner_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.l(custos.current_principal()) AS in_savepoint;
ROLLBACK TO SAVEPOINT s;
SELECT custos.current_principal() AS after_rollback_to_savepoint, custos.current_access() AS access;
SELECT pg_temp.l(custos.authenticate(:'member_tok') ->> 'principal') AS other_token;
SAVEPOINT t;
SELECT pg_temp.l(custos.current_principal()) AS in_later_savepoint;
ROLLBACK TO SAVEPOINT t;
SELECT pg_temp.l(custos.current_principal()) AS authenticated_before_savepoint;
COMMIT;
-- the same through a released inner savepoint, and a PL/pgSQL block that fails
BEGIN;
SAVEPOINT outer_sp;
SAVEPOINT inner_sp;
SELECT custos.authenticate(:'owner_tok') IS NOT NULL AS authenticated;
RELEASE SAVEPOINT inner_sp;
SELECT pg_temp.l(custos.current_principal()) AS after_release;
ROLLBACK TO SAVEPOINT outer_sp;
SELECT custos.current_principal() AS after_rollback_to_outer;
COMMIT;
BEGIN;
SELECT pg_temp.attempt(format('SELECT custos.authenticate(%L)', :'owner_tok')) AS authenticated_in_failed_block;
SELECT custos.current_principal() AS after_failed_block;
COMMIT;
-- authenticating again with the same token inside a savepoint, then rolling
-- it back, leaves the authentication made before the savepoint in place
BEGIN;
SELECT custos.authenticate(:'owner_tok') IS NOT NULL AS authenticated;
SAVEPOINT s;
SELECT custos.authenticate(:'owner_tok') IS NOT NULL AS again_in_savepoint;
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.l(custos.current_principal()) AS still_authenticated;
COMMIT;
-- NULL authenticates nobody
SELECT custos.authenticate(NULL) AS null_token;

-- ---------------------------------------------------------------------------
-- Refused alike: forged, altered, expired, revoked, disabled
-- ---------------------------------------------------------------------------
\set VERBOSITY default
SELECT custos.authenticate('cst_' || repeat('0', 64));
\set VERBOSITY terse
SELECT pg_temp.try($$SELECT custos.authenticate('')$$) AS empty;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', 'cst_' || encode(sha256('forged'), 'hex'))) AS forged;
-- one hex digit changed, a prefix, the id instead of the secret, the stored hash itself
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)',
         overlay(:'owner_tok' placing CASE WHEN substr(:'owner_tok', 20, 1) = 'a' THEN 'b' ELSE 'a' END from 20 for 1))) AS altered;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', left(:'owner_tok', 67))) AS truncated;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'owner_tok' || ' ')) AS trailing_space;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', upper(:'owner_tok'))) AS upper_case;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'owner_tid')) AS token_id;
RESET ROLE;
SELECT encode(secret_hash, 'hex') AS owner_hash FROM custos.token WHERE id = :'owner_tid' \gset
SET ROLE regress_tk_client;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'owner_hash')) AS stored_hash;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', 'cst_' || :'owner_hash')) AS stored_hash_prefixed;
RESET ROLE;

-- expired: a fresh token, past its expiry before it is ever used
SELECT token_id AS exp_tid, token AS exp_tok FROM custos.issue_token(:'member', label => 'will expire') \gset
INSERT INTO labels VALUES (:'exp_tid', 'tok(expired)');
UPDATE custos.token SET expires_at = now() - interval '1 minute' WHERE id = :'exp_tid';
SET ROLE regress_tk_client;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'exp_tok')) AS expired;

-- revoked: a token this session has used is refused at once after revocation
BEGIN;
SELECT custos.authenticate(:'app_tok') IS NOT NULL AS app_authenticated;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'owner_tok') IS NOT NULL AS owner_authenticated;
SELECT custos.revoke_token(:'app_tid');
COMMIT;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'app_tok')) AS revoked;
-- revocation is idempotent, and recorded each time
BEGIN;
SELECT custos.authenticate(:'owner_tok') IS NOT NULL AS owner_authenticated;
SELECT custos.revoke_token(:'app_tid');
COMMIT;

-- who may revoke: the token's principal, an owner or admin of its tenant or above
BEGIN;
SELECT custos.authenticate(:'member_tok') IS NOT NULL AS member_authenticated;
SELECT pg_temp.try(format('SELECT custos.revoke_token(%L)', :'owner_tid')) AS member_revokes_owner;
SELECT pg_temp.try(format('SELECT custos.revoke_token(%L)', :'shared_tid')) AS member_revokes_app;
SELECT pg_temp.try($$SELECT custos.revoke_token('tok_0000000000000000')$$) AS unknown_token;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'b_tok') IS NOT NULL AS other_tenant_owner;
SELECT pg_temp.try(format('SELECT custos.revoke_token(%L)', :'shared_tid')) AS other_tenant_revokes;
COMMIT;
-- the token's own principal gives it up (here: the app with its shared token)
BEGIN;
SELECT custos.authenticate(:'shared_tok') IS NOT NULL AS shared_authenticated;
SELECT custos.revoke_token(:'shared_tid');
COMMIT;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'shared_tok')) AS revoked_by_itself;

-- disabled principal: its tokens stop working, even one used a moment ago
RESET ROLE;
SELECT token_id AS member_tid2, token AS member_tok2 FROM custos.issue_token(:'member', label => 'second') \gset
INSERT INTO labels VALUES (:'member_tid2', 'tok2(member)');
SET ROLE regress_tk_client;
BEGIN;
SELECT custos.authenticate(:'member_tok2') IS NOT NULL AS member_authenticated;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'owner_tok') IS NOT NULL AS owner_authenticated;
SELECT custos.disable_principal(:'member');
COMMIT;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'member_tok')) AS disabled;
SELECT pg_temp.try(format('SELECT custos.authenticate(%L)', :'member_tok2')) AS disabled_second;
-- nothing above left a caller behind
SELECT custos.current_principal() AS caller;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- The tenant's log: issues and revocations, with who did them
-- ---------------------------------------------------------------------------
SELECT custos.seal() > 0 AS sealed;
SELECT e.tenant, e.action, e.resource_type, pg_temp.l(e.resource_id) AS resource, e.resource_name,
       pg_temp.l(e.actor) AS actor, pg_temp.l(e.access) AS access,
       e.new_state ->> 'kind' AS kind, pg_temp.l(e.new_state ->> 'principal') AS for_principal,
       e.previous_state ->> 'name' AS previous_name
  FROM custos.events e
 WHERE e.tenant IN ('tk-a', 'tk-b') AND e.resource_type IN ('TOKEN', 'PRINCIPAL') AND e.action <> 'CREATE'
 ORDER BY e.id;
SELECT pg_temp.l(t.id) AS token, pg_temp.l(t.principal) AS principal, t.kind, t.label,
       pg_temp.l(t.issued_by) AS issued_by, t.revoked_at IS NOT NULL AS revoked, t.expires_at < now() AS expired
  FROM custos.token t JOIN custos.principal p ON p.id = t.principal
 WHERE p.tenant IN ('tk-a', 'tk-b') ORDER BY t.created_at, t.id;

SELECT custos.seal() >= 0 AS flushed;
DROP TABLE secrets;
DROP ROLE regress_tk_client;
