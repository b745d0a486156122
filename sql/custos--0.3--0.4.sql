/*
 * custos--0.3--0.4.sql: capture: custos.track()/untrack(), the action taxonomy registry (issue 4)
 *
 * Two concerns:
 *   - the taxonomy: built-in categories, resource types and actions, a
 *     registry for an installation's own, and a mode ('strict' or 'open')
 *     that decides whether custos.log() refuses names outside it;
 *   - capture: custos.track() attaches a C trigger (custos.capture_row) to an
 *     application table so that its writes become audit events in the same
 *     transaction.  docs/capture.md explains the design.
 *
 * Both catalogs are custos storage: the guard triggers refuse every write that
 * does not come through custos' own C code (custos.taxonomy_write,
 * custos.capture_configure), superusers included.
 */

\echo Use "ALTER EXTENSION custos UPDATE TO '0.4'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Taxonomy
-- ---------------------------------------------------------------------------

CREATE TABLE custos.taxonomy (
	kind			text		NOT NULL,
	name			text		NOT NULL,
	description		text,
	builtin			boolean		NOT NULL DEFAULT false,
	registered_at	timestamptz	NOT NULL DEFAULT clock_timestamp(),
	CONSTRAINT taxonomy_pkey PRIMARY KEY (kind, name),
	CONSTRAINT taxonomy_kind CHECK (kind IN ('category', 'resource_type', 'action')),
	CONSTRAINT taxonomy_name CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$')
);
COMMENT ON TABLE custos.taxonomy IS
	'Categories, resource types and actions custos.log() accepts in strict mode: the built-in ones and those registered with custos.register_*().';
COMMENT ON COLUMN custos.taxonomy.kind IS 'category, resource_type or action: the event field the name is valid for.';
COMMENT ON COLUMN custos.taxonomy.name IS 'The exact (case-sensitive) value of the event field.';
COMMENT ON COLUMN custos.taxonomy.builtin IS 'Shipped with custos (from the seeds and custos'' own events); registered by the installation otherwise.';

CREATE TABLE custos.taxonomy_setting (
	singleton		boolean		NOT NULL DEFAULT true,
	mode			text		NOT NULL,
	changed_at		timestamptz	NOT NULL DEFAULT clock_timestamp(),
	CONSTRAINT taxonomy_setting_pkey PRIMARY KEY (singleton),
	CONSTRAINT taxonomy_setting_singleton CHECK (singleton),
	CONSTRAINT taxonomy_setting_mode CHECK (mode IN ('strict', 'open'))
);
COMMENT ON TABLE custos.taxonomy_setting IS
	'The installation''s taxonomy mode (custos.set_taxonomy_mode()); no row means the default, strict.';

INSERT INTO custos.taxonomy (kind, name, description, builtin)
SELECT 'category', c.name, c.description, true
  FROM (VALUES
	('access', 'Reads of audit logs and protected data (custos'' READ events).'),
	('privacy', 'custos'' privacy administration: tenants, principals, rights, tokens, privacy mode, protection.'),
	('configuration', 'Configuration changes: custos.track(), the taxonomy, settings.'),
	('data', 'Changes of application data recorded by custos.track() (the default category of captured events).'),
	('security', 'Security-relevant events of an application.'),
	('system', 'Events of the system itself.'),
	('device', 'Events of devices such as cameras and their firmware.'),
	('auth', 'Authentication: logins, logouts, failed logins.'),
	('scheme', 'Schemes, their camera settings, triggers and firmware (seed 002).'),
	('object', 'Bookable objects (seed 003).'),
	('building', 'Buildings (seed 003).'),
	('cost_center', 'Cost centers (seed 003).'),
	('equipment', 'Equipment (seed 003).'),
	('global', 'Global settings (seed 003).'),
	('group', 'Groups (seed 003).'),
	('location', 'Locations (seed 003).'),
	('login', 'Logins (seed 003).'),
	('user', 'Users (seed 003).'),
	('webhook', 'Webhooks (seed 003).'),
	('smart_lock', 'Smart locks (seed 003).'),
	('booking', 'Bookings (seed 003).')
  ) AS c(name, description)
UNION ALL
SELECT 'resource_type', r.name, r.description, true
  FROM (VALUES
	('TENANT', 'A custos tenant.'),
	('PRINCIPAL', 'A custos principal.'),
	('RIGHT', 'A right granted to a principal.'),
	('TOKEN', 'An access token.'),
	('TABLE', 'A database table (protected, tracked or read).'),
	('AUDIT_LOG', 'The audit log itself.'),
	('TAXONOMY', 'The taxonomy registry.'),
	('REPORT', 'A report over the audit log.'),
	('RETENTION_POLICY', 'A tenant''s retention and anonymisation periods.'),
	('LEGAL_HOLD', 'A legal hold that suspends retention.'),
	('SUBJECT', 'A data subject (erasure).'),
	('JOB', 'A run of a custos job (retention, anonymisation).'),
	('SESSION', 'A login session.'),
	('SCHEME', 'A scheme (seed 002).'),
	('CAMERA_SETTINGS', 'Camera settings of a scheme (seed 002).'),
	('TRIGGER', 'A trigger associated with a scheme (seed 002).'),
	('FIRMWARE', 'Firmware of a scheme (seed 002).'),
	('CAMERA', 'A camera.'),
	('ENDPOINT', 'An endpoint (device).'),
	('GROUP', 'A group.'),
	('USER', 'A user.'),
	('OBJECT', 'A bookable object (seed 003).'),
	('BUILDING', 'A building (seed 003).'),
	('COST_CENTER', 'A cost center (seed 003).'),
	('EQUIPMENT', 'Equipment (seed 003).'),
	('GLOBAL', 'Global settings (seed 003).'),
	('LOCATION', 'A location (seed 003).'),
	('WEBHOOK', 'A webhook (seed 003).'),
	('SMART_LOCK', 'A smart lock (seed 003).'),
	('BOOKING', 'A booking (seed 003).')
  ) AS r(name, description)
UNION ALL
SELECT 'action', a.name, a.description, true
  FROM (VALUES
	('CREATE', 'Something was created (an INSERT of a tracked table).'),
	('READ', 'Something was read.'),
	('UPDATE', 'Something was changed (an UPDATE of a tracked table).'),
	('DELETE', 'Something was deleted (a DELETE of a tracked table).'),
	('TRUNCATE', 'A tracked table was emptied.'),
	('ADD', 'A component was added (seed 002).'),
	('REMOVE', 'A component was removed (seed 002).'),
	('DEPLOY', 'A scheme was deployed to a target (seed 002).'),
	('UNDEPLOY', 'A scheme was undeployed from a target (seed 002).'),
	('LOGIN', 'A login.'),
	('LOGOUT', 'A logout.'),
	('LOGIN_FAILED', 'A failed login.'),
	('VIEW', 'Something was looked at.'),
	('EXPORT', 'Data was exported.'),
	('IMPORT', 'Data was imported.'),
	('DOWNLOAD', 'Something was downloaded.'),
	('ENABLE', 'Something was switched on.'),
	('DISABLE', 'Something was switched off or disabled.'),
	('APPROVE', 'Something was approved.'),
	('REJECT', 'Something was rejected.'),
	('ISSUE', 'A token was issued.'),
	('GRANT', 'A right was granted.'),
	('REVOKE', 'A right or token was revoked.'),
	('PRIVACY_MODE_ON', 'A tenant switched privacy mode on.'),
	('PRIVACY_MODE_OFF', 'A tenant switched privacy mode off.'),
	('PROTECT', 'A table was put under custos'' privacy policies.'),
	('UNPROTECT', 'A table was taken out of custos'' privacy policies.'),
	('TRACK', 'A table''s changes are recorded from now on (custos.track()).'),
	('UNTRACK', 'A table''s changes are no longer recorded (custos.untrack()).'),
	('REGISTER', 'A name was added to the taxonomy.'),
	('ERASE', 'Personal data was erased.'),
	('SHRED', 'Keys were destroyed (crypto-shredding).'),
	('PURGE', 'Expired data was removed.'),
	('ARCHIVE', 'Data was archived.'),
	('RESTORE', 'Data was restored.'),
	('HOLD', 'A legal hold was placed.'),
	('RELEASE', 'A legal hold was released.')
  ) AS a(name, description);

-- Upgrades of a log that already holds events keep accepting every name
-- (open mode): custos fails closed, so switching an existing installation to
-- strict validation would make its applications' audited operations fail.
-- New installations start strict.
DO $mode$
BEGIN
	IF EXISTS (SELECT 1 FROM custos.event_log) THEN
		INSERT INTO custos.taxonomy_setting (mode) VALUES ('open');
		-- a WARNING: extension scripts run with client_min_messages >= warning
		RAISE WARNING 'the audit log already holds events, so the custos taxonomy stays in open mode'
			USING HINT = 'Register your own names with custos.register_action() and friends, then SELECT custos.set_taxonomy_mode(''strict'').';
	END IF;
END
$mode$;

-- the built-in names come with the install script, not with the dump
SELECT pg_catalog.pg_extension_config_dump('custos.taxonomy', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('custos.taxonomy_setting', '');

GRANT SELECT ON custos.taxonomy TO PUBLIC;

CREATE FUNCTION custos.taxonomy_write(target text, key jsonb, new_row jsonb) RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'custos_taxonomy_write';
COMMENT ON FUNCTION custos.taxonomy_write(text, jsonb, jsonb) IS
	'Internal: deletes the row of custos.taxonomy or custos.taxonomy_setting matching key and inserts new_row, past the storage guard; used by the register and mode functions.';

CREATE FUNCTION custos.taxonomy_mode() RETURNS text
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce((SELECT s.mode FROM custos.taxonomy_setting s), 'strict')
$$;
COMMENT ON FUNCTION custos.taxonomy_mode() IS
	'strict: custos.log() refuses categories, resource types and actions outside custos.taxonomy; open: it accepts any.';

CREATE FUNCTION custos.set_taxonomy_mode(mode text) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old text := custos.taxonomy_mode();
BEGIN
	IF NOT custos.caller_is_superuser() THEN
		RAISE EXCEPTION 'only a superuser may change the taxonomy mode' USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF mode IS NULL OR mode NOT IN ('strict', 'open') THEN
		RAISE EXCEPTION 'invalid taxonomy mode "%"', mode
			USING ERRCODE = 'invalid_parameter_value', HINT = 'The mode is ''strict'' or ''open''.';
	END IF;
	IF mode = old THEN
		RETURN;
	END IF;
	PERFORM custos.taxonomy_write('taxonomy_setting', '{}',
								  pg_catalog.jsonb_build_object('singleton', true, 'mode', mode));
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', 'custos-system', 'category', 'configuration', 'action', 'UPDATE',
		'resource_type', 'TAXONOMY', 'resource_id', 'mode',
		'previous_state', pg_catalog.jsonb_build_object('mode', old),
		'new_state', pg_catalog.jsonb_build_object('mode', mode)));
END
$$;
COMMENT ON FUNCTION custos.set_taxonomy_mode(text) IS
	'Switches the installation''s taxonomy between strict and open (superuser); audited.';

CREATE FUNCTION custos.register_taxonomy(kind text, name text, description text DEFAULT NULL) RETURNS boolean
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT custos.caller_is_superuser() THEN
		RAISE EXCEPTION 'only a superuser may extend the taxonomy' USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF kind IS NULL OR kind NOT IN ('category', 'resource_type', 'action') THEN
		RAISE EXCEPTION 'invalid taxonomy kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value', HINT = 'The kind is ''category'', ''resource_type'' or ''action''.';
	END IF;
	IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
		RAISE EXCEPTION 'invalid % name "%"', pg_catalog.replace(kind, '_', ' '), name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A name starts with a letter or digit and has at most 128 letters, digits, "_", ".", ":" or "-".';
	END IF;
	IF EXISTS (SELECT 1 FROM custos.taxonomy t WHERE t.kind = register_taxonomy.kind AND t.name = register_taxonomy.name) THEN
		RETURN false;
	END IF;
	PERFORM custos.taxonomy_write('taxonomy', NULL,
								  pg_catalog.jsonb_build_object('kind', kind, 'name', name, 'description', description));
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', 'custos-system', 'category', 'configuration', 'action', 'REGISTER',
		'resource_type', 'TAXONOMY', 'resource_id', kind || ':' || name, 'resource_name', name,
		'new_state', pg_catalog.jsonb_build_object('kind', kind, 'name', name, 'description', description)));
	RETURN true;
END
$$;
COMMENT ON FUNCTION custos.register_taxonomy(text, text, text) IS
	'Adds a category, resource type or action to the installation''s taxonomy (superuser); true if it was new; audited.';

CREATE FUNCTION custos.register_action(name text, description text DEFAULT NULL) RETURNS boolean
	LANGUAGE sql AS $$ SELECT custos.register_taxonomy('action', $1, $2) $$;
COMMENT ON FUNCTION custos.register_action(text, text) IS 'Adds an action to the taxonomy (superuser); true if it was new.';
CREATE FUNCTION custos.register_category(name text, description text DEFAULT NULL) RETURNS boolean
	LANGUAGE sql AS $$ SELECT custos.register_taxonomy('category', $1, $2) $$;
COMMENT ON FUNCTION custos.register_category(text, text) IS 'Adds a category to the taxonomy (superuser); true if it was new.';
CREATE FUNCTION custos.register_resource_type(name text, description text DEFAULT NULL) RETURNS boolean
	LANGUAGE sql AS $$ SELECT custos.register_taxonomy('resource_type', $1, $2) $$;
COMMENT ON FUNCTION custos.register_resource_type(text, text) IS 'Adds a resource type to the taxonomy (superuser); true if it was new.';

-- in strict mode: is this name registered?  (track() checks its arguments with it)
-- The check custos.log() makes (taxonomy.c), for SQL callers such as track().
CREATE FUNCTION custos.taxonomy_check(kind text, name text) RETURNS void
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'custos_taxonomy_check';
COMMENT ON FUNCTION custos.taxonomy_check(text, text) IS
	'Internal: in strict mode, raises 22023 naming the allowed values unless name is a registered category, resource_type or action.';

REVOKE ALL ON FUNCTION custos.taxonomy_write(text, jsonb, jsonb), custos.set_taxonomy_mode(text),
	custos.register_taxonomy(text, text, text), custos.register_action(text, text),
	custos.register_category(text, text), custos.register_resource_type(text, text),
	custos.taxonomy_check(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos.taxonomy_mode() TO PUBLIC;

-- ---------------------------------------------------------------------------
-- Capture
-- ---------------------------------------------------------------------------

CREATE TABLE custos.tracked_table (
	relid				regclass	NOT NULL,
	resource_type		text		NOT NULL,
	tenant_column		name		NOT NULL,
	key_columns			name[]		NOT NULL,
	resource_name_column name,
	category			text		NOT NULL,
	actions				jsonb		NOT NULL,
	excluded			name[]		NOT NULL DEFAULT '{}',
	redacted			name[]		NOT NULL DEFAULT '{}',
	metadata			jsonb,
	target_level		text,
	target_level_column	name,
	target_name_column	name,
	record_noop			boolean		NOT NULL DEFAULT false,
	key_in_state		boolean		NOT NULL DEFAULT true,
	record_state		boolean		NOT NULL DEFAULT true,
	subject_column		name,
	attnums				jsonb		NOT NULL,
	tracked_at			timestamptz	NOT NULL DEFAULT clock_timestamp(),
	CONSTRAINT tracked_table_pkey PRIMARY KEY (relid)
);
COMMENT ON TABLE custos.tracked_table IS
	'Application tables whose writes custos records as audit events (custos.track()); read by the capture trigger, cached per backend.';
COMMENT ON COLUMN custos.tracked_table.actions IS
	'The event action for each operation: {"INSERT": .., "UPDATE": .., "DELETE": .., "TRUNCATE": ..}.';
COMMENT ON COLUMN custos.tracked_table.excluded IS 'Columns never recorded, not even as changed.';
COMMENT ON COLUMN custos.tracked_table.redacted IS 'Columns recorded as changed with the value replaced by "[redacted]" (besides custos.capture_deny_columns).';
COMMENT ON COLUMN custos.tracked_table.metadata IS
	'Event metadata: {"key": "column"} takes a column''s value, {"key": {"value": json}} a constant, {"key": {"tenant": "name"}} the tenant''s name.';
COMMENT ON COLUMN custos.tracked_table.subject_column IS
	'Column naming the data subject a row is about: the event''s subject, so that erasing the subject erases these events too.';
COMMENT ON COLUMN custos.tracked_table.attnums IS
	'Attribute numbers of the configured columns when tracked: a configured column renamed later is still found (and still redacted).';

SELECT pg_catalog.pg_extension_config_dump('custos.tracked_table', '');

CREATE FUNCTION custos.capture_row() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'custos_capture_row';
COMMENT ON FUNCTION custos.capture_row() IS
	'Trigger of tracked tables: records each INSERT, UPDATE and DELETE (row level) and each TRUNCATE (statement level) as an audit event.';

CREATE FUNCTION custos.capture_configure(tbl regclass, config jsonb) RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'custos_capture_configure';
COMMENT ON FUNCTION custos.capture_configure(regclass, jsonb) IS
	'Internal: replaces (config NULL: removes) the custos.tracked_table row of tbl past the storage guard, and makes every session reload it.';

-- custos' guard on the two catalogs (storage: written only by custos' C code)
DO $guards$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['taxonomy', 'taxonomy_setting', 'tracked_table']
	LOOP
		EXECUTE pg_catalog.format('CREATE TRIGGER guard_write BEFORE INSERT OR UPDATE OR DELETE ON custos.%I '
					   'FOR EACH STATEMENT EXECUTE FUNCTION custos.guard_storage()', t);
		EXECUTE pg_catalog.format('CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON custos.%I '
					   'FOR EACH STATEMENT EXECUTE FUNCTION custos.guard_storage()', t);
	END LOOP;
END
$guards$;

CREATE FUNCTION custos.track(
	tbl regclass,
	resource_type text,
	tenant_column name,
	resource_name_column name DEFAULT NULL,
	category text DEFAULT 'data',
	actions jsonb DEFAULT NULL,
	excluded name[] DEFAULT '{}',
	redacted name[] DEFAULT '{}',
	metadata jsonb DEFAULT NULL,
	target_level text DEFAULT NULL,
	target_level_column name DEFAULT NULL,
	target_name_column name DEFAULT NULL,
	key_columns name[] DEFAULT NULL,
	record_noop boolean DEFAULT false,
	key_in_state boolean DEFAULT true,
	record_state boolean DEFAULT true,
	subject_column name DEFAULT NULL) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old custos.tracked_table;
	acts jsonb := '{"INSERT": "CREATE", "UPDATE": "UPDATE", "DELETE": "DELETE", "TRUNCATE": "TRUNCATE"}';
	keys name[];
	cols name[];
	col name;
	k text;
	v jsonb;
	attnums jsonb;
	config jsonb;
BEGIN
	IF NOT custos.caller_is_superuser() THEN
		RAISE EXCEPTION 'only a superuser may track a table' USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF tbl IS NULL OR resource_type IS NULL OR tenant_column IS NULL THEN
		RAISE EXCEPTION 'custos.track() needs a table, a resource type and a tenant column'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = tbl) <> 'r' THEN
		RAISE EXCEPTION '"%" is not an ordinary table', tbl
			USING ERRCODE = 'wrong_object_type',
				  HINT = 'A partitioned table is tracked partition by partition: call custos.track() for each partition.';
	END IF;
	IF (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = tbl) = 'custos'::regnamespace THEN
		RAISE EXCEPTION 'custos'' own tables cannot be tracked' USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- taxonomy (strict mode): the names this table's events will carry
	PERFORM custos.taxonomy_check('resource_type', resource_type);
	PERFORM custos.taxonomy_check('category', category);
	IF actions IS NOT NULL THEN
		IF pg_catalog.jsonb_typeof(actions) <> 'object' THEN
			RAISE EXCEPTION 'actions must be a JSON object like {"INSERT": "ADD", "DELETE": "REMOVE"}'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR k, v IN SELECT * FROM pg_catalog.jsonb_each(actions) LOOP
			IF k NOT IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE') OR pg_catalog.jsonb_typeof(v) <> 'string' THEN
				RAISE EXCEPTION 'invalid entry "%" in actions', k
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Keys are INSERT, UPDATE, DELETE and TRUNCATE; values are action names.';
			END IF;
		END LOOP;
		acts := acts OPERATOR(pg_catalog.||) actions;
	END IF;
	FOR v IN SELECT e.value FROM pg_catalog.jsonb_each(acts) e LOOP
		PERFORM custos.taxonomy_check('action', v #>> '{}');
	END LOOP;
	IF target_level IS NOT NULL AND target_level NOT IN ('TENANT', 'GROUP', 'ENDPOINT') THEN
		RAISE EXCEPTION 'invalid target level "%"', target_level
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Allowed values: "TENANT", "GROUP", "ENDPOINT".';
	END IF;
	IF target_level IS NOT NULL AND target_level_column IS NOT NULL THEN
		RAISE EXCEPTION 'give target_level or target_level_column, not both' USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- the key: the primary key, or a unique not-null key named by the caller
	IF key_columns IS NULL THEN
		SELECT pg_catalog.array_agg(a.attname ORDER BY k.ord) INTO keys
		  FROM pg_catalog.pg_index i,
			   LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord),
			   pg_catalog.pg_attribute a
		 WHERE i.indrelid = tbl AND i.indisprimary
		   AND a.attrelid = tbl AND a.attnum = k.attnum;
		IF keys IS NULL THEN
			RAISE EXCEPTION 'table "%" has no primary key', tbl
				USING ERRCODE = 'invalid_table_definition',
					  DETAIL = 'Captured events name the changed row by its key; custos does not use ctid (it changes with every UPDATE) nor a full-row identity (it would copy every column, secrets included, into resource_id).',
					  HINT = 'Add a primary key, or name a unique, not-null key with key_columns => ARRAY[...].';
		END IF;
	ELSE
		keys := key_columns;
		IF NOT EXISTS (
			SELECT 1 FROM pg_catalog.pg_index i
			 WHERE i.indrelid = tbl AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
			   AND (SELECT pg_catalog.array_agg(a.attname ORDER BY a.attname)
					  FROM pg_catalog.pg_attribute a
					 WHERE a.attrelid = tbl AND a.attnum = ANY (i.indkey))
				   = (SELECT pg_catalog.array_agg(c ORDER BY c) FROM pg_catalog.unnest(keys) c))
		   OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
					   WHERE a.attrelid = tbl AND a.attname = ANY (keys) AND NOT a.attnotnull) THEN
			RAISE EXCEPTION 'key_columns of "%" must be NOT NULL columns with a unique index on exactly them', tbl
				USING ERRCODE = 'invalid_table_definition';
		END IF;
	END IF;

	-- every configured column exists
	cols := keys OPERATOR(pg_catalog.||) ARRAY[tenant_column, resource_name_column, target_level_column, target_name_column,
											   subject_column]
		OPERATOR(pg_catalog.||) excluded OPERATOR(pg_catalog.||) redacted;
	IF metadata IS NOT NULL THEN
		IF pg_catalog.jsonb_typeof(metadata) <> 'object' THEN
			RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR k, v IN SELECT * FROM pg_catalog.jsonb_each(metadata) LOOP
			IF pg_catalog.jsonb_typeof(v) = 'string' THEN
				cols := cols OPERATOR(pg_catalog.||) (v #>> '{}')::name;
			ELSIF NOT (pg_catalog.jsonb_typeof(v) = 'object' AND
					   ((v ? 'value' AND (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(v)) = 1) OR
						v = '{"tenant": "name"}')) THEN
				RAISE EXCEPTION 'invalid metadata entry "%"', k
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Each entry is "column name", {"value": <constant>} or {"tenant": "name"}.';
			END IF;
		END LOOP;
	END IF;
	FOREACH col IN ARRAY cols LOOP
		IF col IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM pg_catalog.pg_attribute a
			 WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
			RAISE EXCEPTION 'column "%" of "%" does not exist', col, tbl USING ERRCODE = 'undefined_column';
		END IF;
	END LOOP;
	IF tenant_column = ANY (excluded) OR keys && excluded THEN
		RAISE EXCEPTION 'the tenant and key columns of "%" cannot be excluded', tbl USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT pg_catalog.jsonb_object_agg(a.attname, a.attnum) INTO attnums
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = tbl AND a.attname = ANY (cols) AND a.attnum > 0 AND NOT a.attisdropped;

	config := pg_catalog.jsonb_build_object(
		'relid', tbl::oid, 'resource_type', resource_type, 'tenant_column', tenant_column,
		'key_columns', keys, 'resource_name_column', resource_name_column, 'category', category,
		'actions', acts, 'excluded', excluded, 'redacted', redacted, 'metadata', metadata,
		'target_level', target_level, 'target_level_column', target_level_column,
		'target_name_column', target_name_column, 'record_noop', record_noop,
		'key_in_state', key_in_state, 'record_state', record_state, 'subject_column', subject_column,
		'attnums', attnums);

	SELECT * INTO old FROM custos.tracked_table t WHERE t.relid = tbl;
	PERFORM custos.capture_configure(tbl, config);
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'custos_capture') THEN
		EXECUTE pg_catalog.format('CREATE TRIGGER custos_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
								  'FOR EACH ROW EXECUTE FUNCTION custos.capture_row()', tbl);
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = 'custos_capture_truncate') THEN
		EXECUTE pg_catalog.format('CREATE TRIGGER custos_capture_truncate AFTER TRUNCATE ON %s '
								  'FOR EACH STATEMENT EXECUTE FUNCTION custos.capture_row()', tbl);
	END IF;
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', 'custos-system', 'category', 'configuration', 'action', 'TRACK', 'resource_type', 'TABLE',
		'resource_id', tbl::text, 'resource_name', resource_type,
		'previous_state', CASE WHEN old.relid IS NOT NULL
							   THEN pg_catalog.to_jsonb(old) OPERATOR(pg_catalog.-) '{relid,attnums,tracked_at}'::text[] END,
		'new_state', config OPERATOR(pg_catalog.-) '{relid,attnums}'::text[]));
END
$$;
COMMENT ON FUNCTION custos.track(regclass, text, name, name, text, jsonb, name[], name[], jsonb, text, name, name, name[], boolean, boolean, boolean, name) IS
	'Records every INSERT, UPDATE, DELETE and TRUNCATE of a table as audit events of the row''s tenant (superuser); tracking a tracked table again replaces its configuration.  Audited.  See docs/capture.md.';

CREATE FUNCTION custos.untrack(tbl regclass) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old custos.tracked_table;
BEGIN
	IF NOT custos.caller_is_superuser() THEN
		RAISE EXCEPTION 'only a superuser may untrack a table' USING ERRCODE = 'insufficient_privilege';
	END IF;
	SELECT * INTO old FROM custos.tracked_table t WHERE t.relid = tbl;
	IF old.relid IS NULL THEN
		RAISE EXCEPTION '"%" is not tracked by custos', tbl USING ERRCODE = 'no_data_found';
	END IF;
	-- the catalog row goes first: the DDL guard below lets the triggers go
	-- only once the table is no longer tracked
	PERFORM custos.capture_configure(tbl, NULL);
	EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS custos_capture ON %s', tbl);
	EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS custos_capture_truncate ON %s', tbl);
	PERFORM custos.log(pg_catalog.jsonb_build_object(
		'tenant', 'custos-system', 'category', 'configuration', 'action', 'UNTRACK', 'resource_type', 'TABLE',
		'resource_id', tbl::text, 'resource_name', old.resource_type,
		'previous_state', pg_catalog.to_jsonb(old) OPERATOR(pg_catalog.-) '{relid,attnums,tracked_at}'::text[]));
END
$$;
COMMENT ON FUNCTION custos.untrack(regclass) IS 'Stops recording a tracked table''s writes (superuser); audited.';

-- Capture cannot be switched off behind custos' back: dropping or disabling
-- a tracked table's capture triggers is refused (untrack first); dropping a
-- tracked table untracks it, audited.  (A superuser can still skip triggers
-- with session_replication_role = replica, as for custos' own storage.)
CREATE FUNCTION custos.capture_guard_ddl() RETURNS event_trigger
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT t.relid, g.tgname
		  FROM custos.tracked_table t
		  JOIN pg_catalog.pg_trigger g ON g.tgrelid = t.relid
		 -- 'D' disabled, 'R' fires only under session_replication_role = replica
		 WHERE g.tgname IN ('custos_capture', 'custos_capture_truncate') AND g.tgenabled IN ('D', 'R')
	LOOP
		RAISE EXCEPTION 'trigger "%" of tracked table "%" cannot be disabled', r.tgname, r.relid
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'custos.untrack() stops recording the table''s changes, audited.';
	END LOOP;
END
$$;
COMMENT ON FUNCTION custos.capture_guard_ddl() IS 'Event trigger: refuses disabling the capture triggers of a tracked table.';
CREATE EVENT TRIGGER custos_capture_guard ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION custos.capture_guard_ddl();

CREATE FUNCTION custos.capture_guard_drop() RETURNS event_trigger
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
	t custos.tracked_table;
BEGIN
	FOR r IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP
		IF r.object_type = 'table' THEN
			SELECT * INTO t FROM custos.tracked_table x WHERE x.relid::oid = r.objid;
			IF t.relid IS NOT NULL THEN
				PERFORM custos.capture_configure(r.objid::regclass, NULL);
				PERFORM custos.log(pg_catalog.jsonb_build_object(
					'tenant', 'custos-system', 'category', 'configuration', 'action', 'UNTRACK',
					'resource_type', 'TABLE', 'resource_id', r.object_identity, 'resource_name', t.resource_type,
					'description', 'the tracked table was dropped',
					'previous_state', pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.-) '{relid,attnums,tracked_at}'::text[]));
			END IF;
		ELSIF r.object_type = 'trigger' AND r.original AND
			  r.object_identity ~ '^custos_capture(_truncate)? on ' THEN
			-- a trigger dropped on its own (not with its table) of a table still tracked
			IF EXISTS (SELECT 1 FROM custos.tracked_table x
						WHERE r.object_identity IN ('custos_capture on ' || x.relid::text,
													'custos_capture_truncate on ' || x.relid::text)
						  AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = x.relid)) THEN
				RAISE EXCEPTION 'the capture trigger of a tracked table cannot be dropped'
					USING ERRCODE = 'insufficient_privilege',
						  HINT = 'custos.untrack() stops recording the table''s changes, audited.';
			END IF;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION custos.capture_guard_drop() IS
	'Event trigger: untracks (audited) a dropped tracked table; refuses dropping the capture triggers of a table still tracked.';
CREATE EVENT TRIGGER custos_capture_drop ON sql_drop
	EXECUTE FUNCTION custos.capture_guard_drop();

REVOKE ALL ON FUNCTION custos.capture_configure(regclass, jsonb), custos.capture_row(),
	custos.track(regclass, text, name, name, text, jsonb, name[], name[], jsonb, text, name, name, name[], boolean, boolean, boolean, name),
	custos.untrack(regclass), custos.capture_guard_ddl(), custos.capture_guard_drop() FROM PUBLIC;
