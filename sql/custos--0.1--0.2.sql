/*
 * custos--0.1--0.2.sql: privacy.  Tenants in a tree, principals, rights,
 * tokens, privacy mode, and row-level security on the audit log.
 *
 * Identity: custos.authenticate(token) establishes the calling principal for
 * the current transaction in backend memory (privacy.c); without a token, a
 * database role mapped to a principal (principal.db_role) acts as that
 * principal.  Nothing in a GUC or session variable decides who is calling.
 *
 * Enforcement: RLS policies (FORCE ROW LEVEL SECURITY) on event_log, block
 * and data_key ask C functions for the tenants the caller may read, once per
 * query (each call is wrapped in a sub-select).  Privacy mode hides a
 * tenant's data keys, and with them the personal fields of its events, from
 * principals of ancestor tenants.  Superusers bypass RLS, as in PostgreSQL.
 */

\echo Use "ALTER EXTENSION custos UPDATE TO '0.2'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Who is who
-- ---------------------------------------------------------------------------

CREATE TABLE custos.tenant (
	id				text		NOT NULL,
	parent			text,
	name			text,
	privacy_mode	boolean		NOT NULL DEFAULT false,
	created_at		timestamptz	NOT NULL DEFAULT clock_timestamp(),
	CONSTRAINT tenant_pkey PRIMARY KEY (id),
	CONSTRAINT tenant_parent_fkey FOREIGN KEY (parent) REFERENCES custos.tenant (id),
	CONSTRAINT tenant_id_format CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$')
);
COMMENT ON TABLE custos.tenant IS
	'Tenants form a tree: a reseller manages customer sub-accounts, which may have groups.  Events name their tenant by id.';
COMMENT ON COLUMN custos.tenant.privacy_mode IS
	'While on, principals of ancestor tenants are denied this tenant''s protected data and its events'' personal fields.';
-- Serves the tree walks of the policy functions (children of a tenant).
CREATE INDEX tenant_parent ON custos.tenant (parent);
COMMENT ON INDEX custos.tenant_parent IS 'Tree walks: the children of a tenant (privacy.c).';

CREATE TABLE custos.principal (
	id				text		NOT NULL,
	tenant			text		NOT NULL,
	kind			text		NOT NULL,
	role			text		NOT NULL,
	name			text		NOT NULL,
	db_role			name,
	db_role_oid		oid,
	created_at		timestamptz	NOT NULL DEFAULT clock_timestamp(),
	disabled_at		timestamptz,
	CONSTRAINT principal_pkey PRIMARY KEY (id),
	CONSTRAINT principal_tenant_fkey FOREIGN KEY (tenant) REFERENCES custos.tenant (id),
	CONSTRAINT principal_kind CHECK (kind IN ('user', 'api_key', 'app', 'system')),
	CONSTRAINT principal_role CHECK (role IN ('owner', 'admin', 'member')),
	CONSTRAINT principal_db_role_key UNIQUE (db_role_oid)
);
COMMENT ON TABLE custos.principal IS
	'Users, API keys, apps and system identities of a tenant.  role: owner (the customer''s admin), admin or member.';
COMMENT ON COLUMN custos.principal.db_role_oid IS
	'The mapped role by OID: a role dropped and created again under the same name is another role and maps to nobody.';
COMMENT ON COLUMN custos.principal.db_role IS
	'A database role that acts as this principal without a token (apps calling SQL directly).';

CREATE TABLE custos.right_grant (
	id				bigint		GENERATED ALWAYS AS IDENTITY,
	tenant			text		NOT NULL,
	principal		text		NOT NULL,
	right_name		text		NOT NULL,
	granted_by		text		NOT NULL,
	granted_at		timestamptz	NOT NULL DEFAULT clock_timestamp(),
	expires_at		timestamptz,
	revoked_at		timestamptz,
	revoked_by		text,
	CONSTRAINT right_grant_pkey PRIMARY KEY (id),
	CONSTRAINT right_grant_tenant_fkey FOREIGN KEY (tenant) REFERENCES custos.tenant (id),
	CONSTRAINT right_grant_principal_fkey FOREIGN KEY (principal) REFERENCES custos.principal (id),
	CONSTRAINT right_grant_right CHECK (right_name IN ('audit.read', 'audit.export', 'audit.write_as',
													   'privacy.manage', 'data.read'))
);
COMMENT ON TABLE custos.right_grant IS
	'Rights granted on a tenant (and its descendants).  data.read is the owner''s time-limited exception to privacy mode.';
-- Serves the policy functions' lookups of a principal's live grants.
CREATE INDEX right_grant_principal ON custos.right_grant (principal, tenant, right_name) WHERE revoked_at IS NULL;
COMMENT ON INDEX custos.right_grant_principal IS 'Policy functions: live grants of a principal on a tenant.';

CREATE TABLE custos.token (
	id				text		NOT NULL,
	principal		text		NOT NULL,
	kind			text		NOT NULL,
	secret_hash		bytea		NOT NULL,
	label			text,
	created_at		timestamptz	NOT NULL DEFAULT clock_timestamp(),
	expires_at		timestamptz	NOT NULL,
	revoked_at		timestamptz,
	issued_by		text,
	issued_via		text,
	vouched_at		timestamptz,
	CONSTRAINT token_pkey PRIMARY KEY (id),
	CONSTRAINT token_principal_fkey FOREIGN KEY (principal) REFERENCES custos.principal (id),
	CONSTRAINT token_kind CHECK (kind IN ('personal', 'app', 'shared')),
	CONSTRAINT token_secret_hash_key UNIQUE (secret_hash)
);
COMMENT ON TABLE custos.token IS
	'Bearer tokens.  Only the SHA-256 of the secret is stored; the secret is shown once by custos.issue_token().';
COMMENT ON COLUMN custos.token.issued_by IS
	'Principal (or "role:<name>") that issued the token: it saw the secret.';
COMMENT ON COLUMN custos.token.issued_via IS
	'Token the issuer was authenticated with, if any: whoever holds that token could have issued this one too.';
COMMENT ON COLUMN custos.token.vouched_at IS
	'When the token''s principal switched privacy mode on with it: from then on it, and what was issued through it, is trusted.';
COMMENT ON COLUMN custos.token.kind IS
	'personal: acts with all the principal''s rights; app and shared: see only the events they appended themselves.';

CREATE TABLE custos.protected_table (
	relid			regclass	NOT NULL,
	tenant_column	name		NOT NULL,
	data_class		text		NOT NULL,
	protected_at	timestamptz	NOT NULL DEFAULT clock_timestamp(),
	CONSTRAINT protected_table_pkey PRIMARY KEY (relid)
);
COMMENT ON TABLE custos.protected_table IS
	'Application tables under custos'' privacy policies (custos.protect()); reads of them are audited.';

-- the installation-events tenant is created by this script, not restored
SELECT pg_catalog.pg_extension_config_dump('custos.tenant', 'WHERE id <> ''custos-system''');
SELECT pg_catalog.pg_extension_config_dump('custos.principal', '');
SELECT pg_catalog.pg_extension_config_dump('custos.right_grant', '');
SELECT pg_catalog.pg_extension_config_dump('custos.token', '');
SELECT pg_catalog.pg_extension_config_dump('custos.protected_table', '');

-- Events are filtered by tenant and time range (custos.events, the gateway).
CREATE INDEX event_log_tenant_occurred ON custos.event_log (tenant, occurred_at);
COMMENT ON INDEX custos.event_log_tenant_occurred IS
	'Filtered reads of a tenant''s events by time range (custos.events with the privacy policies).';

-- ---------------------------------------------------------------------------
-- The caller (privacy.c)
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.authenticate(token text) RETURNS jsonb
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'custos_authenticate';
COMMENT ON FUNCTION custos.authenticate(text) IS
	'Validates a bearer token and makes its principal the caller for the rest of the transaction.';

CREATE FUNCTION custos.current_principal() RETURNS text
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'custos_current_principal';
COMMENT ON FUNCTION custos.current_principal() IS
	'The calling principal: from custos.authenticate() in this transaction, else from the mapped database role; NULL if none.';

CREATE FUNCTION custos.current_access() RETURNS text
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'custos_current_access';
COMMENT ON FUNCTION custos.current_access() IS
	'What custos records as an event''s "access": the token id, or the principal id of a mapped role.';

CREATE FUNCTION custos.access_info() RETURNS jsonb
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'custos_access_info';
COMMENT ON FUNCTION custos.access_info() IS
	'Who am I: principal, tenant, role, token kind and the tenants readable, in personal view and in data.';

CREATE FUNCTION custos.visible_tenants() RETURNS text[]
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'custos_visible_tenants';
COMMENT ON FUNCTION custos.visible_tenants() IS
	'Policy helper: tenants whose audit log the caller may read.';

CREATE FUNCTION custos.personal_tenants() RETURNS text[]
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'custos_personal_tenants';
COMMENT ON FUNCTION custos.personal_tenants() IS
	'Policy helper: readable tenants whose personal fields the caller may see (privacy mode respected).';

CREATE FUNCTION custos.data_tenants() RETURNS text[]
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'custos_data_tenants';
COMMENT ON FUNCTION custos.data_tenants() IS
	'Policy helper: tenants whose protected application data the caller may access (privacy mode respected).';

CREATE FUNCTION custos.sees_all_actions() RETURNS boolean
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'custos_sees_all_actions';
COMMENT ON FUNCTION custos.sees_all_actions() IS
	'Policy helper: false for app and shared tokens, which see only the events they appended.';

CREATE FUNCTION custos.invalidate_auth() RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'custos_invalidate_auth';
COMMENT ON FUNCTION custos.invalidate_auth() IS
	'Makes every backend drop cached token validations (called on revocation).';

-- Any change to who-is-who, by any path, empties every session's cached
-- tokens, role mappings and tenant sets when it commits (privacy.c).
CREATE FUNCTION custos.catalog_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM custos.invalidate_auth();
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION custos.catalog_changed() IS
	'Trigger: invalidates cached caller data in every session when the privacy catalog changes.';
CREATE TRIGGER invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON custos.tenant
	FOR EACH STATEMENT EXECUTE FUNCTION custos.catalog_changed();
CREATE TRIGGER invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON custos.principal
	FOR EACH STATEMENT EXECUTE FUNCTION custos.catalog_changed();
CREATE TRIGGER invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON custos.right_grant
	FOR EACH STATEMENT EXECUTE FUNCTION custos.catalog_changed();
CREATE TRIGGER invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON custos.token
	FOR EACH STATEMENT EXECUTE FUNCTION custos.catalog_changed();
REVOKE ALL ON FUNCTION custos.catalog_changed() FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Row-level security
-- ---------------------------------------------------------------------------

ALTER TABLE custos.event_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE custos.event_log FORCE ROW LEVEL SECURITY;
CREATE POLICY read_events ON custos.event_log FOR SELECT TO PUBLIC
	USING (tenant OPERATOR(pg_catalog.=) ANY ((SELECT custos.visible_tenants())::text[])
		   AND ((SELECT custos.sees_all_actions())
				OR access OPERATOR(pg_catalog.=) (SELECT custos.current_access())));

ALTER TABLE custos.block ENABLE ROW LEVEL SECURITY;
ALTER TABLE custos.block FORCE ROW LEVEL SECURITY;
CREATE POLICY read_blocks ON custos.block FOR SELECT TO PUBLIC
	USING (tenant OPERATOR(pg_catalog.=) ANY ((SELECT custos.visible_tenants())::text[]));

ALTER TABLE custos.data_key ENABLE ROW LEVEL SECURITY;
ALTER TABLE custos.data_key FORCE ROW LEVEL SECURITY;
CREATE POLICY read_keys ON custos.data_key FOR SELECT TO PUBLIC
	USING (tenant OPERATOR(pg_catalog.=) ANY ((SELECT custos.personal_tenants())::text[]));

-- The view now reads with the caller's rights, so that the policies apply.
ALTER VIEW custos.events SET (security_invoker = true);
CREATE OR REPLACE VIEW custos.events WITH (security_invoker = true) AS
SELECT
	e.id,
	e.tenant,
	e.occurred_at,
	e.recorded_at,
	coalesce(custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'actor'),
			 ak.pseudonym) AS actor,
	e.actor_type,
	custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'actor_name') AS actor_name,
	(custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'source_ip'))::inet AS source_ip,
	custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'user_agent') AS user_agent,
	e.category,
	e.action,
	e.resource_type,
	e.resource_id,
	e.resource_name,
	e.target_level,
	e.target_name,
	custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'subject') AS subject,
	custos.personal_text(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'description') AS description,
	e.outcome,
	custos.personal_json(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'previous_state') AS previous_state,
	custos.personal_json(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'new_state') AS new_state,
	custos.personal_json(e.personal, ak.key, sk.key, e.tenant, e.subject_key_id IS NOT NULL, 'metadata') AS metadata,
	e.request_id,
	e.access,
	-- the block whose window covers the id: the first ending above it (one
	-- probe of block_tenant_id_hi), if it also starts at or below it
	(SELECT CASE WHEN b.id_lo OPERATOR(pg_catalog.<=) e.id
				 THEN b.first_seq OPERATOR(pg_catalog.+) pg_catalog.array_position(b.event_ids, e.id) OPERATOR(pg_catalog.-) 1
			END
	   FROM custos.block b
	  WHERE b.tenant OPERATOR(pg_catalog.=) e.tenant
		AND b.id_hi OPERATOR(pg_catalog.>) e.id
	  ORDER BY b.id_hi LIMIT 1) AS seq,
	(SELECT CASE WHEN b.id_lo OPERATOR(pg_catalog.<=) e.id THEN b.block_no END
	   FROM custos.block b
	  WHERE b.tenant OPERATOR(pg_catalog.=) e.tenant
		AND b.id_hi OPERATOR(pg_catalog.>) e.id
	  ORDER BY b.id_hi LIMIT 1) AS block_no,
	e.id OPERATOR(pg_catalog.<) coalesce((SELECT s.watermark FROM custos.sealer_state s), 1) AS sealed,
	CASE
		WHEN ak.key_id IS NULL THEN 'hidden'
		WHEN ak.key IS NULL THEN 'anonymised'
		WHEN e.subject_key_id IS NOT NULL AND sk.key_id IS NULL THEN 'hidden'
		WHEN e.subject_key_id IS NOT NULL AND sk.key IS NULL THEN 'erased'
		ELSE 'clear'
	END AS personal_data
FROM custos.event_log e
LEFT JOIN custos.data_key ak ON ak.key_id OPERATOR(pg_catalog.=) e.actor_key_id
LEFT JOIN custos.data_key sk ON sk.key_id OPERATOR(pg_catalog.=) e.subject_key_id;
COMMENT ON COLUMN custos.events.personal_data IS
	'clear; anonymised (actor key destroyed); erased (subject key destroyed); hidden (not visible to this caller, e.g. privacy mode).';

-- Readers need the tables behind the view; the policies decide which rows.
-- A caller without a principal sees no row at all.
GRANT SELECT ON custos.events TO PUBLIC;
GRANT SELECT ON custos.event_log, custos.block, custos.data_key, custos.sealer_state TO PUBLIC;
GRANT EXECUTE ON FUNCTION custos.personal_text(bytea, bytea, bytea, text, boolean, text),
					  custos.personal_json(bytea, bytea, bytea, text, boolean, text),
					  custos.visible_tenants(), custos.personal_tenants(), custos.data_tenants(),
					  custos.sees_all_actions(), custos.current_access(), custos.current_principal(),
					  custos.access_info(), custos.authenticate(text),
					  custos.log(jsonb), custos.log_batch(jsonb)
	TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Administration.  Each function checks who calls (custos.current_principal()
-- resolves the caller outside SECURITY DEFINER), changes the catalog, and
-- records what it did as an audit event of the tenant concerned.
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.caller_role() RETURNS text
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'custos_caller_role';
COMMENT ON FUNCTION custos.caller_role() IS
	'The role the session acts as (SET ROLE counts, SECURITY DEFINER does not).';

CREATE FUNCTION custos.new_token_secret() RETURNS text
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'custos_new_token_secret';
COMMENT ON FUNCTION custos.new_token_secret() IS
	'A fresh token secret: "cst_" and 256 bits of strong randomness in hex.';

-- Installation-wide events (protect, unprotect, role mappings) go to this tenant.
INSERT INTO custos.tenant (id, name) VALUES ('custos-system', 'custos installation events');

-- Tenants the log already names (from 0.1) become top-level tenants, so that
-- principals can be created for them; a DBA can arrange the tree later.
INSERT INTO custos.tenant (id)
SELECT DISTINCT e.tenant FROM custos.event_log e
 WHERE e.tenant ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'
ON CONFLICT (id) DO NOTHING;

CREATE FUNCTION custos.caller_is_superuser() RETURNS boolean
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = custos.caller_role()), false)
$$;
COMMENT ON FUNCTION custos.caller_is_superuser() IS 'Whether the role the session acts as is a superuser.';

CREATE FUNCTION custos.tenant_path(tenant text) RETURNS text[]
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH RECURSIVE up(id, parent, depth) AS (
		SELECT t.id, t.parent, 0 FROM custos.tenant t WHERE t.id = $1
		UNION ALL
		SELECT t.id, t.parent, up.depth + 1 FROM custos.tenant t JOIN up ON t.id = up.parent)
	SELECT pg_catalog.array_agg(id ORDER BY depth) FROM up
$$;
COMMENT ON FUNCTION custos.tenant_path(text) IS 'The tenant and its ancestors, nearest first; NULL for an unknown tenant.';

-- Raises 42501 unless the caller is a superuser or an owner/admin principal
-- of the tenant or of one of its ancestors; returns the caller's principal.
CREATE FUNCTION custos.require_admin(tenant text) RETURNS text
	LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me custos.principal;
	path text[] := custos.tenant_path(tenant);
BEGIN
	IF path IS NULL THEN
		RAISE EXCEPTION 'tenant "%" does not exist', tenant USING ERRCODE = 'no_data_found';
	END IF;
	SELECT * INTO me FROM custos.principal p WHERE p.id = custos.current_principal();
	IF me.id IS NOT NULL AND me.role IN ('owner', 'admin') AND me.tenant = ANY (path) THEN
		RETURN me.id;
	END IF;
	IF custos.caller_is_superuser() THEN
		RETURN me.id;
	END IF;
	RAISE EXCEPTION 'only an owner or admin of tenant "%" or of a tenant above it may do this', tenant
		USING ERRCODE = 'insufficient_privilege',
			  HINT = 'Authenticate with a token of such a principal.';
END
$$;
COMMENT ON FUNCTION custos.require_admin(text) IS 'Authorisation check of the administration functions.';

CREATE FUNCTION custos.create_tenant(id text, parent text DEFAULT NULL, name text DEFAULT NULL)
	RETURNS text
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF parent IS NULL THEN
		IF NOT custos.caller_is_superuser() THEN
			RAISE EXCEPTION 'only a superuser may create a top-level tenant'
				USING ERRCODE = 'insufficient_privilege',
					  HINT = 'Create it below an existing tenant you administer.';
		END IF;
	ELSE
		PERFORM custos.require_admin(parent);
	END IF;
	IF id !~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' THEN
		RAISE EXCEPTION 'invalid tenant id "%"', id USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use 1 to 128 letters, digits, ".", "_", ":" or "-", starting with a letter or digit.';
	END IF;
	INSERT INTO custos.tenant (id, parent, name) VALUES ($1, $2, $3);
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', $1, 'category', 'privacy', 'action', 'CREATE', 'resource_type', 'TENANT',
		'resource_id', $1, 'resource_name', $3,
		'new_state', pg_catalog.jsonb_build_object('parent', $2, 'name', $3)));
	RETURN $1;
EXCEPTION WHEN unique_violation THEN
	RAISE EXCEPTION 'tenant "%" already exists', $1 USING ERRCODE = 'duplicate_object';
END
$$;
COMMENT ON FUNCTION custos.create_tenant(text, text, text) IS
	'Creates a tenant; below a parent, by an owner or admin of the parent or above (a reseller creating a customer).';

CREATE FUNCTION custos.create_principal(tenant text, name text, kind text DEFAULT 'user',
										role text DEFAULT 'member', db_role name DEFAULT NULL)
	RETURNS text
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	new_id text := 'p_' || pg_catalog.substr(custos.new_token_secret(), 5, 16);
BEGIN
	PERFORM custos.require_admin($1);
	IF $5 IS NOT NULL AND NOT custos.caller_is_superuser() THEN
		RAISE EXCEPTION 'only a superuser may map a database role to a principal'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF $5 IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = $5) THEN
		RAISE EXCEPTION 'role "%" does not exist', $5 USING ERRCODE = 'undefined_object';
	END IF;
	IF $5 IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = $5
								  AND (r.rolsuper OR r.rolbypassrls)) THEN
		RAISE EXCEPTION 'role "%" bypasses row-level security and cannot act as a principal', $5
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Map a role without SUPERUSER and BYPASSRLS.';
	END IF;
	INSERT INTO custos.principal (id, tenant, kind, role, name, db_role, db_role_oid)
		VALUES (new_id, $1, $3, $4, $2, $5,
				(SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $5));
	PERFORM custos.invalidate_auth();
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', $1, 'category', 'privacy', 'action', 'CREATE', 'resource_type', 'PRINCIPAL',
		'resource_id', new_id,
		'new_state', pg_catalog.jsonb_build_object('name', $2, 'kind', $3, 'role', $4, 'db_role', $5)));
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION custos.create_principal(text, text, text, text, name) IS
	'Creates a user, API key, app or system principal of a tenant; db_role (superuser only) lets that role act as it.';

CREATE FUNCTION custos.disable_principal(principal text) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	p custos.principal;
BEGIN
	SELECT * INTO p FROM custos.principal WHERE id = $1;
	IF p.id IS NULL THEN
		RAISE EXCEPTION 'principal "%" does not exist', $1 USING ERRCODE = 'no_data_found';
	END IF;
	PERFORM custos.require_admin(p.tenant);
	UPDATE custos.principal SET disabled_at = pg_catalog.clock_timestamp() WHERE id = $1 AND disabled_at IS NULL;
	PERFORM custos.invalidate_auth();
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', p.tenant, 'category', 'privacy', 'action', 'DISABLE', 'resource_type', 'PRINCIPAL',
		'resource_id', p.id, 'previous_state', pg_catalog.jsonb_build_object('name', p.name)));
END
$$;
COMMENT ON FUNCTION custos.disable_principal(text) IS 'Disables a principal: its tokens and role mapping stop working.';

CREATE FUNCTION custos.grant_right(tenant text, principal text, right_name text,
								   expires_at timestamptz DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me text := custos.current_principal();
	grantee custos.principal;
	owner_only boolean := $3 IN ('data.read', 'privacy.manage');
	path text[] := custos.tenant_path($1);
	new_id bigint;
BEGIN
	IF path IS NULL THEN
		RAISE EXCEPTION 'tenant "%" does not exist', $1 USING ERRCODE = 'no_data_found';
	END IF;
	SELECT * INTO grantee FROM custos.principal p WHERE p.id = $2 AND p.disabled_at IS NULL;
	IF grantee.id IS NULL THEN
		RAISE EXCEPTION 'principal "%" does not exist', $2 USING ERRCODE = 'no_data_found';
	END IF;
	IF $3 NOT IN ('audit.read', 'audit.export', 'audit.write_as', 'privacy.manage', 'data.read') THEN
		RAISE EXCEPTION 'unknown right "%"', $3 USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Rights: audit.read, audit.export, audit.write_as, privacy.manage, data.read.';
	END IF;
	IF me IS NOT NULL AND me = $2 THEN
		RAISE EXCEPTION 'a principal cannot grant rights to itself' USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF NOT (grantee.tenant = ANY (path)) THEN
		RAISE EXCEPTION 'principal "%" belongs to neither tenant "%" nor a tenant above it', $2, $1
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF owner_only THEN
		-- privacy decisions belong to the tenant's own owner, never to a reseller
		IF NOT (custos.caller_is_superuser()
				OR EXISTS (SELECT 1 FROM custos.principal p WHERE p.id = me AND p.tenant = $1
						   AND p.role = 'owner' AND p.disabled_at IS NULL)) THEN
			RAISE EXCEPTION 'only the owner of tenant "%" may grant "%"', $1, $3
				USING ERRCODE = 'insufficient_privilege';
		END IF;
		IF $3 = 'data.read' AND ($4 IS NULL OR $4 <= pg_catalog.now() OR grantee.tenant = $1) THEN
			RAISE EXCEPTION 'data.read is a time-limited grant to a principal of a tenant above "%"', $1
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Give expires_at in the future and a principal of an ancestor tenant.';
		END IF;
		IF $3 = 'privacy.manage' AND grantee.tenant <> $1 THEN
			RAISE EXCEPTION 'privacy.manage can only be granted to principals of tenant "%" itself', $1
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	ELSE
		PERFORM custos.require_admin($1);
	END IF;
	INSERT INTO custos.right_grant (tenant, principal, right_name, granted_by, expires_at)
		VALUES ($1, $2, $3, coalesce(me, 'role:' || custos.caller_role()), $4)
		RETURNING id INTO new_id;
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', $1, 'category', 'privacy', 'action', 'GRANT', 'resource_type', 'RIGHT',
		'resource_id', new_id::text, 'resource_name', $3,
		'new_state', pg_catalog.jsonb_build_object('principal', $2, 'right', $3, 'expires_at', $4)));
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION custos.grant_right(text, text, text, timestamptz) IS
	'Grants a right on a tenant (and the tenants below it).  data.read and privacy.manage only by the tenant''s own owner.';

CREATE FUNCTION custos.grant_access(tenant text, principal text, until timestamptz) RETURNS bigint
	LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT custos.grant_right($1, $2, 'data.read', $3)
$$;
COMMENT ON FUNCTION custos.grant_access(text, text, timestamptz) IS
	'The owner lets a principal of an ancestor tenant (a reseller) see its protected data despite privacy mode, until a time.';

CREATE FUNCTION custos.revoke_right(grant_id bigint) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	g custos.right_grant;
	me text := custos.current_principal();
BEGIN
	SELECT * INTO g FROM custos.right_grant WHERE id = $1 AND revoked_at IS NULL;
	IF g.id IS NULL THEN
		RAISE EXCEPTION 'no live grant %', $1 USING ERRCODE = 'no_data_found';
	END IF;
	IF me IS DISTINCT FROM g.principal THEN		-- anyone may give up a right
		IF g.right_name IN ('data.read', 'privacy.manage') THEN
			IF NOT (custos.caller_is_superuser()
					OR EXISTS (SELECT 1 FROM custos.principal p WHERE p.id = me AND p.tenant = g.tenant
							   AND p.role = 'owner' AND p.disabled_at IS NULL)) THEN
				RAISE EXCEPTION 'only the owner of tenant "%" may revoke "%"', g.tenant, g.right_name
					USING ERRCODE = 'insufficient_privilege';
			END IF;
		ELSE
			PERFORM custos.require_admin(g.tenant);
		END IF;
	END IF;
	UPDATE custos.right_grant SET revoked_at = pg_catalog.clock_timestamp(),
		   revoked_by = coalesce(me, 'role:' || custos.caller_role())
	 WHERE id = $1;
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', g.tenant, 'category', 'privacy', 'action', 'REVOKE', 'resource_type', 'RIGHT',
		'resource_id', g.id::text, 'resource_name', g.right_name,
		'previous_state', pg_catalog.jsonb_build_object('principal', g.principal, 'right', g.right_name)));
END
$$;
COMMENT ON FUNCTION custos.revoke_right(bigint) IS 'Revokes a grant; the grantee may always give it up.';

CREATE FUNCTION custos.issue_token(principal text, kind text DEFAULT 'personal',
								   valid_for interval DEFAULT '90 days', label text DEFAULT NULL,
								   OUT token_id text, OUT token text, OUT expires_at timestamptz)
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	p custos.principal;
	me custos.principal;
BEGIN
	SELECT * INTO p FROM custos.principal pr WHERE pr.id = $1 AND pr.disabled_at IS NULL;
	IF p.id IS NULL THEN
		RAISE EXCEPTION 'principal "%" does not exist', $1 USING ERRCODE = 'no_data_found';
	END IF;
	SELECT * INTO me FROM custos.principal pr WHERE pr.id = custos.current_principal();
	IF me.id IS DISTINCT FROM p.id THEN
		PERFORM custos.require_admin(p.tenant);
		-- A token is the power to act as its principal.  From a tenant above,
		-- that would override privacy mode, so it is refused while the
		-- principal's tenant (or a tenant between) is in privacy mode.
		IF me.id IS NOT NULL AND me.tenant <> p.tenant
		   AND EXISTS (SELECT 1 FROM custos.tenant t
					   WHERE t.id = ANY (custos.tenant_path(p.tenant)) AND t.privacy_mode
					   AND NOT (t.id = ANY (custos.tenant_path(me.tenant)))) THEN
			RAISE EXCEPTION 'tokens for principals of tenant "%" can only be issued from within it while it is in privacy mode', p.tenant
				USING ERRCODE = 'insufficient_privilege',
					  HINT = 'Ask the tenant''s owner or admin.';
		END IF;
	END IF;
	IF $2 NOT IN ('personal', 'app', 'shared') THEN
		RAISE EXCEPTION 'unknown token kind "%"', $2 USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Token kinds: personal, app, shared.';
	END IF;
	IF $3 IS NULL OR $3 <= interval '0' OR $3 > interval '366 days' THEN
		RAISE EXCEPTION 'tokens must expire within one year' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	token_id := 'tok_' || pg_catalog.substr(custos.new_token_secret(), 5, 16);
	token := custos.new_token_secret();
	expires_at := pg_catalog.clock_timestamp() + $3;
	INSERT INTO custos.token (id, principal, kind, secret_hash, label, expires_at, issued_by, issued_via)
		VALUES (token_id, p.id, $2, pg_catalog.sha256(pg_catalog.convert_to(token, 'UTF8')), $4, expires_at,
				coalesce(me.id, 'role:' || custos.caller_role()),
				(SELECT k.id FROM custos.token k WHERE k.id = custos.current_access()));
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', p.tenant, 'category', 'privacy', 'action', 'ISSUE', 'resource_type', 'TOKEN',
		'resource_id', token_id, 'resource_name', $4,
		'new_state', pg_catalog.jsonb_build_object('principal', p.id, 'kind', $2, 'expires_at', expires_at)));
END
$$;
COMMENT ON FUNCTION custos.issue_token(text, text, interval, text) IS
	'Issues a token; the secret is returned once and only its SHA-256 is stored.';

CREATE FUNCTION custos.revoke_token(token_id text) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t custos.token;
	p custos.principal;
BEGIN
	SELECT * INTO t FROM custos.token WHERE id = $1;
	IF t.id IS NULL THEN
		RAISE EXCEPTION 'token "%" does not exist', $1 USING ERRCODE = 'no_data_found';
	END IF;
	SELECT * INTO p FROM custos.principal WHERE id = t.principal;
	IF custos.current_principal() IS DISTINCT FROM p.id THEN
		PERFORM custos.require_admin(p.tenant);
	END IF;
	UPDATE custos.token SET revoked_at = pg_catalog.clock_timestamp() WHERE id = $1 AND revoked_at IS NULL;
	PERFORM custos.invalidate_auth();
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', p.tenant, 'category', 'privacy', 'action', 'REVOKE', 'resource_type', 'TOKEN',
		'resource_id', t.id));
END
$$;
COMMENT ON FUNCTION custos.revoke_token(text) IS 'Revokes a token at once, in every session.';

CREATE FUNCTION custos.set_privacy_mode(tenant text, enabled boolean) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	me text := custos.current_principal();
	old boolean;
	revoked_tokens text[];
BEGIN
	SELECT t.privacy_mode INTO old FROM custos.tenant t WHERE t.id = $1 FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'tenant "%" does not exist', $1 USING ERRCODE = 'no_data_found';
	END IF;
	-- the tenant's own owner, or one of its own principals holding privacy.manage
	IF NOT (EXISTS (SELECT 1 FROM custos.principal p WHERE p.id = me AND p.tenant = $1
					AND p.disabled_at IS NULL
					AND (p.role = 'owner'
						 OR EXISTS (SELECT 1 FROM custos.right_grant g WHERE g.principal = p.id
									AND g.tenant = $1 AND g.right_name = 'privacy.manage'
									AND g.revoked_at IS NULL
									AND (g.expires_at IS NULL OR g.expires_at > pg_catalog.now()))))
			OR (me IS NULL AND custos.caller_is_superuser())) THEN
		RAISE EXCEPTION 'only the owner of tenant "%" may switch its privacy mode', $1
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Principals of tenants above it, resellers included, cannot override it.';
	END IF;
	-- A token issued by someone else is known to them: whoever issued the
	-- owner's token (a reseller, at onboarding) could act as the owner and
	-- lift privacy mode again.  Switching it on needs a token the caller
	-- issued itself; all tokens issued from above are revoked below.
	IF $2 AND EXISTS (SELECT 1 FROM custos.token k WHERE k.id = custos.current_access()
					  AND k.issued_by IS DISTINCT FROM k.principal) THEN
		RAISE EXCEPTION 'switching privacy mode on needs a token you issued yourself'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'This token was issued by someone else, who could use it to act as you.',
				  HINT = 'Issue yourself a new token with custos.issue_token(), authenticate with it, and try again.';
	END IF;
	UPDATE custos.tenant t SET privacy_mode = $2 WHERE t.id = $1;
	IF $2 THEN
		-- Tokens of the subtree's principals that someone outside could hold
		-- stop working: those issued from outside (a reseller, a superuser),
		-- and those issued through such a token (whoever held it could have
		-- issued them), transitively.  The token making the switch is kept and
		-- vouched for: it, and what is issued through it, is not suspect, now
		-- or at later switches.
		WITH RECURSIVE sub(id) AS (
			SELECT $1::text
			UNION ALL SELECT c.id FROM custos.tenant c JOIN sub ON c.parent = sub.id),
		subp AS (SELECT p.id FROM custos.principal p WHERE p.tenant IN (SELECT id FROM sub)),
		suspect(id) AS (
			SELECT k.id FROM custos.token k
			 WHERE k.principal IN (SELECT id FROM subp)
			   AND k.issued_by NOT IN (SELECT id FROM subp)
			   AND k.vouched_at IS NULL
			UNION
			SELECT k.id FROM custos.token k JOIN suspect s ON k.issued_via = s.id
			 WHERE k.principal IN (SELECT id FROM subp)
			   AND k.vouched_at IS NULL
			   AND s.id IS DISTINCT FROM custos.current_access()),
		revoked AS (
			UPDATE custos.token k SET revoked_at = pg_catalog.clock_timestamp()
			 WHERE k.id IN (SELECT id FROM suspect) AND k.revoked_at IS NULL
			   AND k.id IS DISTINCT FROM custos.current_access()
			RETURNING k.id)
		SELECT pg_catalog.array_agg(id ORDER BY id) INTO revoked_tokens FROM revoked;
		UPDATE custos.token k SET vouched_at = pg_catalog.clock_timestamp()
		 WHERE k.id = custos.current_access() AND k.vouched_at IS NULL;
		PERFORM custos.invalidate_auth();
	END IF;
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', $1, 'category', 'privacy',
		'action', CASE WHEN $2 THEN 'PRIVACY_MODE_ON' ELSE 'PRIVACY_MODE_OFF' END,
		'resource_type', 'TENANT', 'resource_id', $1,
		'previous_state', pg_catalog.jsonb_build_object('privacy_mode', old),
		'new_state', pg_catalog.jsonb_build_object('privacy_mode', $2,
												   'revoked_tokens', coalesce(revoked_tokens, '{}'))));
END
$$;
COMMENT ON FUNCTION custos.set_privacy_mode(text, boolean) IS
	'Switches a tenant''s privacy mode; only its own owner (or its own principals with privacy.manage) may.';

REVOKE ALL ON FUNCTION custos.caller_role(), custos.new_token_secret(), custos.caller_is_superuser(),
	custos.tenant_path(text), custos.require_admin(text), custos.invalidate_auth() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos.create_tenant(text, text, text),
	custos.create_principal(text, text, text, text, name), custos.disable_principal(text),
	custos.grant_right(text, text, text, timestamptz), custos.grant_access(text, text, timestamptz),
	custos.revoke_right(bigint), custos.issue_token(text, text, interval, text),
	custos.revoke_token(text), custos.set_privacy_mode(text, boolean)
	TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Protected application tables and read auditing (readaudit.c)
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.note_read(tenant text, relation regclass) RETURNS boolean
	LANGUAGE c VOLATILE PARALLEL RESTRICTED COST 10000 AS 'MODULE_PATHNAME', 'custos_note_read';
COMMENT ON FUNCTION custos.note_read(text, regclass) IS
	'Policy marker, always true: records that the caller read a row of this tenant, so that the read becomes an audit event.  Costed high so that it runs after the policy''s own test.';

CREATE FUNCTION custos.set_purpose(purpose text) RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'custos_set_purpose';
COMMENT ON FUNCTION custos.set_purpose(text) IS
	'States why the caller reads, for the rest of the transaction; recorded with every READ event.';

-- Reading the audit log is itself recorded: the policy notes each tenant read.
DROP POLICY read_events ON custos.event_log;
CREATE POLICY read_events ON custos.event_log FOR SELECT TO PUBLIC
	USING (tenant OPERATOR(pg_catalog.=) ANY ((SELECT custos.visible_tenants())::text[])
		   AND ((SELECT custos.sees_all_actions())
				OR access OPERATOR(pg_catalog.=) (SELECT custos.current_access()))
		   AND custos.note_read(tenant, 'custos.event_log'::regclass));

-- Applies custos' policies to one table (not to its partitions).
CREATE FUNCTION custos.apply_protection(rel regclass, tenant_column name) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	SET client_min_messages = warning AS $$
DECLARE
	col text := pg_catalog.quote_ident(tenant_column);
	indexed boolean;
BEGIN
	-- policies before ALTER TABLE: the partition event trigger, which fires on
	-- ALTER TABLE, then finds this table done and does not recurse
	EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_allow ON %s', rel);
	EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_read ON %s', rel);
	EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_insert ON %s', rel);
	EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_update ON %s', rel);
	EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_delete ON %s', rel);
	-- custos' own conditions are RESTRICTIVE: ANDed with whatever permissive
	-- policies exist, so that another policy (the owner's, the DBA's) can
	-- never widen access or let rows pass without the read marker.  A
	-- restrictive policy needs a permissive one to start from: custos_allow.
	EXECUTE pg_catalog.format(
		'CREATE POLICY custos_allow ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)', rel);
	EXECUTE pg_catalog.format(
		'CREATE POLICY custos_read ON %s AS RESTRICTIVE FOR SELECT TO PUBLIC USING ('
		'%s::text OPERATOR(pg_catalog.=) ANY ((SELECT custos.data_tenants())::text[]) '
		'AND custos.note_read(%s::text, %L::regclass))', rel, col, col, rel::text);
	-- writes see and produce only rows of accessible tenants, so that no
	-- UPDATE ... WHERE or RETURNING can probe hidden rows
	EXECUTE pg_catalog.format(
		'CREATE POLICY custos_insert ON %s AS RESTRICTIVE FOR INSERT TO PUBLIC WITH CHECK ('
		'%s::text OPERATOR(pg_catalog.=) ANY ((SELECT custos.data_tenants())::text[]))', rel, col);
	EXECUTE pg_catalog.format(
		'CREATE POLICY custos_update ON %s AS RESTRICTIVE FOR UPDATE TO PUBLIC USING ('
		'%s::text OPERATOR(pg_catalog.=) ANY ((SELECT custos.data_tenants())::text[])) WITH CHECK ('
		'%s::text OPERATOR(pg_catalog.=) ANY ((SELECT custos.data_tenants())::text[]))', rel, col, col);
	EXECUTE pg_catalog.format(
		'CREATE POLICY custos_delete ON %s AS RESTRICTIVE FOR DELETE TO PUBLIC USING ('
		'%s::text OPERATOR(pg_catalog.=) ANY ((SELECT custos.data_tenants())::text[]))', rel, col);
	EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', rel);
	EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', rel);
	-- the policy column needs an index that leads with it
	SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
				   JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
				   WHERE i.indrelid = rel AND a.attname = tenant_column) INTO indexed;
	IF NOT indexed AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel) IN ('r', 'p') THEN
		EXECUTE pg_catalog.format('CREATE INDEX ON %s (%s)', rel, col);
	END IF;
END
$$;
COMMENT ON FUNCTION custos.apply_protection(regclass, name) IS 'Internal: the RLS policies of custos.protect() on one table.';

CREATE FUNCTION custos.protect(tbl regclass, tenant_column name, data_class text) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	part regclass;
BEGIN
	IF NOT custos.caller_is_superuser() THEN
		RAISE EXCEPTION 'only a superuser may protect a table' USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = tbl) NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '"%" is not a table', tbl USING ERRCODE = 'wrong_object_type';
	END IF;
	IF (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = tbl) = 'custos'::regnamespace THEN
		RAISE EXCEPTION 'custos'' own tables are protected already' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl
				   AND a.attname = tenant_column AND a.attnum > 0 AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'column "%" of "%" does not exist', tenant_column, tbl USING ERRCODE = 'undefined_column';
	END IF;
	IF data_class IS NULL OR data_class = '' THEN
		RAISE EXCEPTION 'a data class is required, e.g. ''image data'' or ''health records'''
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM custos.apply_protection(tbl, tenant_column);
	-- partitions get the same policies: RLS on a parent does not cover
	-- queries that name a partition directly
	FOR part IN SELECT relid FROM pg_catalog.pg_partition_tree(tbl) WHERE relid <> tbl LOOP
		PERFORM custos.apply_protection(part, tenant_column);
	END LOOP;
	INSERT INTO custos.protected_table (relid, tenant_column, data_class) VALUES (tbl, tenant_column, data_class)
		ON CONFLICT (relid) DO UPDATE SET tenant_column = excluded.tenant_column, data_class = excluded.data_class;
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', 'custos-system', 'category', 'privacy', 'action', 'PROTECT', 'resource_type', 'TABLE',
		'resource_id', tbl::text, 'resource_name', data_class,
		'new_state', pg_catalog.jsonb_build_object('tenant_column', tenant_column, 'data_class', data_class)));
END
$$;
COMMENT ON FUNCTION custos.protect(regclass, name, text) IS
	'Puts an application table (and its partitions, present and future) under custos'' tenant and privacy-mode policies; every read of it by a principal is recorded.';

CREATE FUNCTION custos.unprotect(tbl regclass) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	part regclass;
	p custos.protected_table;
BEGIN
	IF NOT custos.caller_is_superuser() THEN
		RAISE EXCEPTION 'only a superuser may unprotect a table' USING ERRCODE = 'insufficient_privilege';
	END IF;
	SELECT * INTO p FROM custos.protected_table WHERE relid = tbl;
	IF p.relid IS NULL THEN
		RAISE EXCEPTION '"%" is not protected by custos', tbl USING ERRCODE = 'no_data_found';
	END IF;
	-- the registry row goes first: the partition event trigger fires on the
	-- ALTER TABLEs below and would otherwise put the policies back
	DELETE FROM custos.protected_table WHERE relid = tbl;
	FOR part IN SELECT relid FROM pg_catalog.pg_partition_tree(tbl) LOOP
		EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_allow ON %s', part);
		EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_read ON %s', part);
		EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_insert ON %s', part);
		EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_update ON %s', part);
		EXECUTE pg_catalog.format('DROP POLICY IF EXISTS custos_delete ON %s', part);
		EXECUTE pg_catalog.format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', part);
		EXECUTE pg_catalog.format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', part);
	END LOOP;
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', 'custos-system', 'category', 'privacy', 'action', 'UNPROTECT', 'resource_type', 'TABLE',
		'resource_id', tbl::text, 'resource_name', p.data_class,
		'previous_state', pg_catalog.jsonb_build_object('tenant_column', p.tenant_column, 'data_class', p.data_class)));
END
$$;
COMMENT ON FUNCTION custos.unprotect(regclass) IS 'Removes custos'' policies from a protected table; audited.';

-- New partitions of a protected table get its policies as they are created
-- or attached.
CREATE FUNCTION custos.protect_new_partitions() RETURNS event_trigger
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT t.relid AS part, p.tenant_column
		  FROM custos.protected_table p,
			   LATERAL pg_catalog.pg_partition_tree(p.relid) t
		 WHERE t.relid <> p.relid::regclass
		   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy pol
						   WHERE pol.polrelid = t.relid AND pol.polname = 'custos_read')
	LOOP
		PERFORM custos.apply_protection(r.part, r.tenant_column);
	END LOOP;
END
$$;
COMMENT ON FUNCTION custos.protect_new_partitions() IS
	'Event trigger: applies custos'' policies to new partitions of protected tables.';
CREATE EVENT TRIGGER custos_protect_partitions ON ddl_command_end
	WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
	EXECUTE FUNCTION custos.protect_new_partitions();

REVOKE ALL ON FUNCTION custos.apply_protection(regclass, name), custos.protect_new_partitions(),
	custos.protect(regclass, name, text), custos.unprotect(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos.note_read(text, regclass), custos.set_purpose(text) TO PUBLIC;
