/*
 * custos--0.1.sql: install script for custos 0.1 (the core: append, seal,
 * verify, digest).
 *
 * Storage is insert-only.  Events are appended by custos.log(); a sealer
 * (background worker or custos.seal()) later orders committed events into
 * per-tenant, hash-linked blocks.  Personal fields are stored encrypted under
 * data keys (crypto-shredding), so that anonymisation and erasure destroy keys
 * and never rewrite an event.  docs/format.md specifies every hashed byte.
 *
 * Nothing here is granted to PUBLIC.  A DBA grants EXECUTE on the functions to
 * the roles that may use them (see docs/sql-api.md).
 */

\echo Use "CREATE EXTENSION custos CASCADE" to load this file. \quit

-- Text is hashed as UTF-8 bytes (docs/format.md); the database must store it so.
DO $encoding$
BEGIN
	IF pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
		RAISE EXCEPTION 'custos needs a UTF8 database, not %', pg_catalog.getdatabaseencoding()
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Create the database with ENCODING ''UTF8''.';
	END IF;
END
$encoding$;

-- ---------------------------------------------------------------------------
-- Storage
-- ---------------------------------------------------------------------------

-- CACHE 1 is load-bearing: the sealer relies on every id below a freshly
-- drawn value having been handed out already (see seal.c).  A per-backend
-- cache would hand out old ids after newer ones.
CREATE SEQUENCE custos.event_id_seq AS bigint CACHE 1;
COMMENT ON SEQUENCE custos.event_id_seq IS
	'Event ids.  CACHE 1 so that ids are drawn in time order across sessions; the sealer depends on it.';

CREATE TABLE custos.event_log (
	id				bigint		NOT NULL,
	tenant			text		NOT NULL,
	occurred_at		timestamptz	NOT NULL,
	recorded_at		timestamptz	NOT NULL,
	actor_type		text		NOT NULL,
	category		text,
	action			text		NOT NULL,
	resource_type	text,
	resource_id		text,
	resource_name	text,
	target_level	text,
	target_name		text,
	outcome			text		NOT NULL,
	request_id		text,
	access			text		NOT NULL,
	actor_key_id	bigint		NOT NULL,
	subject_key_id	bigint,
	personal		bytea		NOT NULL,
	CONSTRAINT event_log_pkey PRIMARY KEY (id)
);
COMMENT ON TABLE custos.event_log IS
	'Audit events, insert-only.  Personal fields live encrypted in "personal"; read them through custos.events.';
COMMENT ON COLUMN custos.event_log.id IS 'Event id, from custos.event_id_seq.  Not the chain position (see custos.events.seq).';
COMMENT ON COLUMN custos.event_log.tenant IS 'Tenant whose chain the event belongs to.';
COMMENT ON COLUMN custos.event_log.occurred_at IS 'When the event happened, as the client says (default: recorded_at).';
COMMENT ON COLUMN custos.event_log.recorded_at IS 'When custos recorded the event (clock_timestamp at append); retention counts from here.';
COMMENT ON COLUMN custos.event_log.actor_type IS 'user, api_key, app or system.';
COMMENT ON COLUMN custos.event_log.category IS 'Event category, e.g. login, user, booking, scheme.';
COMMENT ON COLUMN custos.event_log.action IS 'Action, e.g. CREATE, UPDATE, DELETE, READ, DEPLOY, LOGIN, EXPORT.';
COMMENT ON COLUMN custos.event_log.resource_type IS 'Resource type, e.g. SCHEME, CAMERA_SETTINGS, TRIGGER, FIRMWARE.';
COMMENT ON COLUMN custos.event_log.resource_id IS 'Identifier of the resource acted on.';
COMMENT ON COLUMN custos.event_log.resource_name IS 'Display name of the resource acted on.';
COMMENT ON COLUMN custos.event_log.target_level IS 'TENANT, GROUP or ENDPOINT.';
COMMENT ON COLUMN custos.event_log.target_name IS 'Name of the target the action applied to.';
COMMENT ON COLUMN custos.event_log.outcome IS 'success, denied or failure.';
COMMENT ON COLUMN custos.event_log.request_id IS 'Correlation id of the request that caused the event.';
COMMENT ON COLUMN custos.event_log.access IS 'Principal that appended the event, set by custos from the caller, never from the payload.';
COMMENT ON COLUMN custos.event_log.actor_key_id IS 'Data key of the actor for the day of recording (custos.data_key).';
COMMENT ON COLUMN custos.event_log.subject_key_id IS 'Data key of the data subject for the day of recording, if the event has a subject.';
COMMENT ON COLUMN custos.event_log.personal IS 'nonce || AES-256-GCM ciphertext || tag of the personal fields (docs/format.md).';

-- Serves the sealer''s and verifier''s per-tenant scans in id order, and the
-- chain-position lookup of custos.events.
CREATE INDEX event_log_tenant_id ON custos.event_log (tenant, id);
COMMENT ON INDEX custos.event_log_tenant_id IS
	'Per-tenant scans in id order: custos.verify(), custos.events.seq.';

-- Appends take RowExclusiveLock on this empty table before drawing an event
-- id; the sealer waits for its lock holders.  Waiting on custos.event_log
-- itself would also wait for (auto)vacuum and CREATE INDEX CONCURRENTLY,
-- whose ShareUpdateExclusiveLock conflicts with the ShareLock a wait uses.
-- Nothing else ever locks or writes this table.
CREATE TABLE custos.append_fence ();
COMMENT ON TABLE custos.append_fence IS
	'Never holds rows.  Appenders lock it before drawing an event id; the sealer waits for those locks (seal.c).';

CREATE TABLE custos.block (
	tenant			text		NOT NULL,
	block_no		bigint		NOT NULL,
	first_seq		bigint		NOT NULL,
	event_count		integer		NOT NULL,
	id_lo			bigint		NOT NULL,
	id_hi			bigint		NOT NULL,
	event_ids		bigint[]	NOT NULL,
	leaves			bytea		NOT NULL,
	merkle_root		bytea		NOT NULL,
	prev_hash		bytea		NOT NULL,
	block_hash		bytea		NOT NULL,
	sealed_at		timestamptz	NOT NULL,
	format			smallint	NOT NULL,
	CONSTRAINT block_pkey PRIMARY KEY (tenant, block_no)
);
COMMENT ON TABLE custos.block IS
	'Sealed blocks: each holds a tenant''s committed events of one id window, as a Merkle tree, hash-linked to the previous block.';
COMMENT ON COLUMN custos.block.block_no IS 'Position of the block in the tenant''s chain, from 0.';
COMMENT ON COLUMN custos.block.first_seq IS 'Chain position of the block''s first event; positions are gapless per tenant.';
COMMENT ON COLUMN custos.block.id_lo IS 'Lowest event id of the window the block covers (inclusive).';
COMMENT ON COLUMN custos.block.id_hi IS 'Upper end of the window (exclusive).  Every event of the tenant in [id_lo, id_hi) is in the block.';
COMMENT ON COLUMN custos.block.event_ids IS 'Event ids in chain order.  A finding aid for verification; integrity comes from the leaves.';
COMMENT ON COLUMN custos.block.leaves IS 'Concatenated 32-byte leaf hashes in chain order.';
COMMENT ON COLUMN custos.block.merkle_root IS 'RFC 9162 Merkle tree hash of the leaves.';
COMMENT ON COLUMN custos.block.prev_hash IS 'block_hash of the previous block (32 zero bytes for the first).';
COMMENT ON COLUMN custos.block.block_hash IS 'SHA-256 over the encoded block header (docs/format.md).';
COMMENT ON COLUMN custos.block.format IS 'Encoding version of leaves and header.';

-- Serves the chain-position lookup in custos.events (which block covers id?).
CREATE INDEX block_tenant_id_hi ON custos.block (tenant, id_hi);
COMMENT ON INDEX custos.block_tenant_id_hi IS 'custos.events.seq: the block whose window covers an event id.';

CREATE TABLE custos.checkpoint (
	tenant			text		NOT NULL,
	block_no		bigint		NOT NULL,
	next_seq		bigint		NOT NULL,
	block_hash		bytea		NOT NULL,
	cut_at			timestamptz	NOT NULL,
	CONSTRAINT checkpoint_pkey PRIMARY KEY (tenant)
);
COMMENT ON TABLE custos.checkpoint IS
	'Where a tenant''s chain starts after retention removed a prefix: the last removed block, its hash, and when.';

CREATE TABLE custos.sealer_state (
	singleton		boolean		NOT NULL DEFAULT true,
	watermark		bigint		NOT NULL,
	sealed_total	bigint		NOT NULL,
	last_seal_at	timestamptz,
	CONSTRAINT sealer_state_pkey PRIMARY KEY (singleton),
	CONSTRAINT sealer_state_singleton CHECK (singleton)
);
COMMENT ON TABLE custos.sealer_state IS
	'The sealer''s progress: every event with id < watermark is sealed; none at or above it is.';
-- The row is created by the first seal (seal.c), not here: pg_dump'''s copy of
-- it must restore into an empty table.

CREATE SEQUENCE custos.data_key_id_seq AS bigint;

CREATE TABLE custos.data_key (
	key_id			bigint		NOT NULL DEFAULT nextval('custos.data_key_id_seq'),
	tenant			text		NOT NULL,
	scope			text		NOT NULL,
	scope_ref		bytea		NOT NULL,
	period			integer		NOT NULL,
	key				bytea,
	pseudonym		text,
	created_at		timestamptz	NOT NULL DEFAULT clock_timestamp(),
	shredded_at		timestamptz,
	shred_reason	text,
	CONSTRAINT data_key_pkey PRIMARY KEY (key_id),
	CONSTRAINT data_key_scope CHECK (scope IN ('actor', 'subject')),
	CONSTRAINT data_key_shredded CHECK ((key IS NULL) = (shredded_at IS NOT NULL))
);
ALTER SEQUENCE custos.data_key_id_seq OWNED BY custos.data_key.key_id;
COMMENT ON TABLE custos.data_key IS
	'Per tenant, actor or subject, and day: the 256-bit key that encrypts personal fields.  Destroying a key anonymises or erases.';
COMMENT ON COLUMN custos.data_key.scope_ref IS 'HMAC-SHA-256 of scope and value under the tenant secret: finds a key without storing the value.';
COMMENT ON COLUMN custos.data_key.period IS 'Day of recording, as days since 1970-01-01 UTC.';
COMMENT ON COLUMN custos.data_key.key IS 'Key material; NULL once shredded.';
COMMENT ON COLUMN custos.data_key.pseudonym IS 'Stable keyed pseudonym of an actor within the tenant, shown once the key is gone.';

-- Serves key lookup on append (keys.c).  Not unique on purpose: two sessions
-- meeting a new actor at once each create a key rather than one waiting for
-- the other's commit; erasure destroys every key of a scope reference.
CREATE INDEX data_key_live ON custos.data_key (tenant, scope, scope_ref, period) WHERE key IS NOT NULL;
COMMENT ON INDEX custos.data_key_live IS 'Key lookup on append and erasure: the live keys of a tenant, scope reference and day.';

CREATE TABLE custos.installation (
	secret			bytea		NOT NULL DEFAULT gen_random_bytes(32),
	created_at		timestamptz	NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE custos.installation IS
	'The installation secret: the oldest row.  Each tenant''s HMAC key (scope references, pseudonyms) is HMAC-SHA-256(secret, "tenant" || 0 || tenant): derived, so no append ever waits for another to create it.  No key on purpose: restoring a pg_dump adds the original, older row beside the one CREATE EXTENSION made, and the original stays in force.';
INSERT INTO custos.installation DEFAULT VALUES;

-- pg_dump keeps the log: these are data, not configuration, but without this
-- mark pg_dump would skip extension members' contents.
SELECT pg_catalog.pg_extension_config_dump('custos.event_log', '');
SELECT pg_catalog.pg_extension_config_dump('custos.block', '');
SELECT pg_catalog.pg_extension_config_dump('custos.checkpoint', '');
SELECT pg_catalog.pg_extension_config_dump('custos.sealer_state', '');
SELECT pg_catalog.pg_extension_config_dump('custos.data_key', '');
SELECT pg_catalog.pg_extension_config_dump('custos.installation', '');
SELECT pg_catalog.pg_extension_config_dump('custos.event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('custos.data_key_id_seq', '');

-- ---------------------------------------------------------------------------
-- Immutability: every change to storage goes through custos' own C code.
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.guard_storage() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'custos_guard_storage';
COMMENT ON FUNCTION custos.guard_storage() IS
	'Trigger: refuses INSERT, UPDATE, DELETE and TRUNCATE of custos storage outside custos'' own code paths.';

DO $guards$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['event_log', 'block', 'checkpoint', 'sealer_state', 'data_key', 'installation', 'append_fence']
	LOOP
		EXECUTE format('CREATE TRIGGER guard_write BEFORE INSERT OR UPDATE OR DELETE ON custos.%I '
					   'FOR EACH STATEMENT EXECUTE FUNCTION custos.guard_storage()', t);
		EXECUTE format('CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON custos.%I '
					   'FOR EACH STATEMENT EXECUTE FUNCTION custos.guard_storage()', t);
	END LOOP;
END
$guards$;

-- ---------------------------------------------------------------------------
-- Appending
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.log(event jsonb) RETURNS bigint
	LANGUAGE c CALLED ON NULL INPUT VOLATILE AS 'MODULE_PATHNAME', 'custos_log';
COMMENT ON FUNCTION custos.log(jsonb) IS
	'Appends one audit event and returns its id.  Fields and limits: docs/sql-api.md.';

CREATE FUNCTION custos.log_batch(events jsonb) RETURNS SETOF bigint
	LANGUAGE c CALLED ON NULL INPUT VOLATILE ROWS 100 AS 'MODULE_PATHNAME', 'custos_log_batch';
COMMENT ON FUNCTION custos.log_batch(jsonb) IS
	'Appends a JSON array of audit events atomically; returns their ids in array order.';

-- ---------------------------------------------------------------------------
-- Sealing, verification, digests
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.seal() RETURNS bigint
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'custos_seal';
COMMENT ON FUNCTION custos.seal() IS
	'Seals every event committed before the call into blocks; returns how many were sealed.';

CREATE FUNCTION custos.verify(
	tenant			text DEFAULT NULL,
	digest			jsonb DEFAULT NULL,
	OUT tenant		text,
	OUT ok			boolean,
	OUT events_checked bigint,
	OUT blocks_checked bigint,
	OUT pending		bigint,
	OUT size		bigint,
	OUT failure		text,
	OUT failed_seq	bigint,
	OUT failed_event_id bigint,
	OUT failed_block bigint,
	OUT detail		text)
	RETURNS SETOF record
	LANGUAGE c VOLATILE CALLED ON NULL INPUT AS 'MODULE_PATHNAME', 'custos_verify';
COMMENT ON FUNCTION custos.verify(text, jsonb) IS
	'Recomputes every leaf, Merkle root and block hash of one tenant (or all); with a kept digest also detects a truncated or rewritten chain.';

CREATE FUNCTION custos.digest(tenant text) RETURNS jsonb
	LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'custos_digest';
COMMENT ON FUNCTION custos.digest(text) IS
	'The tenant''s chain head (size, block, hash, time) as a JSON document an auditor can keep and later pass to custos.verify().';

CREATE FUNCTION custos.status(
	OUT preloaded	boolean,
	OUT sealer_pid	integer,
	OUT watermark	bigint,
	OUT sealed_total bigint,
	OUT last_seal_at timestamptz,
	OUT pending		bigint)
	RETURNS record
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'custos_status';
COMMENT ON FUNCTION custos.status() IS
	'Whether custos is preloaded, the background sealer''s pid, and the sealer''s progress.';

-- ---------------------------------------------------------------------------
-- Reading: personal fields are decrypted on the way out.
-- ---------------------------------------------------------------------------

CREATE FUNCTION custos.personal_text(personal bytea, actor_key bytea, subject_key bytea,
									 tenant text, has_subject boolean, field text)
	RETURNS text
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'custos_personal_text';
COMMENT ON FUNCTION custos.personal_text(bytea, bytea, bytea, text, boolean, text) IS
	'Decrypts one personal field of an event as text; NULL when a key is gone.  Used by custos.events.';

CREATE FUNCTION custos.personal_json(personal bytea, actor_key bytea, subject_key bytea,
									 tenant text, has_subject boolean, field text)
	RETURNS jsonb
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'custos_personal_json';
COMMENT ON FUNCTION custos.personal_json(bytea, bytea, bytea, text, boolean, text) IS
	'Decrypts one personal field of an event as jsonb; NULL when a key is gone.  Used by custos.events.';

CREATE VIEW custos.events AS
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
		WHEN ak.key IS NULL THEN 'anonymised'
		WHEN e.subject_key_id IS NOT NULL AND sk.key IS NULL THEN 'erased'
		ELSE 'clear'
	END AS personal_data
FROM custos.event_log e
LEFT JOIN custos.data_key ak ON ak.key_id OPERATOR(pg_catalog.=) e.actor_key_id
LEFT JOIN custos.data_key sk ON sk.key_id OPERATOR(pg_catalog.=) e.subject_key_id;

COMMENT ON VIEW custos.events IS
	'Every event with its personal fields decrypted (NULL once anonymised or erased), its chain position and whether it is sealed.';
COMMENT ON COLUMN custos.events.actor IS 'Stable id of the actor, or its pseudonym once anonymised.';
COMMENT ON COLUMN custos.events.seq IS 'Position in the tenant''s chain (from 0); NULL while pending.';
COMMENT ON COLUMN custos.events.block_no IS 'Block holding the event; NULL while pending.';
COMMENT ON COLUMN custos.events.sealed IS 'Whether the sealer has placed the event in a block.';
COMMENT ON COLUMN custos.events.personal_data IS 'clear, anonymised (actor key destroyed) or erased (subject key destroyed).';

-- ---------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC.  See docs/sql-api.md for what to grant.
-- ---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA custos FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA custos FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA custos FROM PUBLIC;
GRANT USAGE ON SCHEMA custos TO PUBLIC;

-- Say at install time which features are off without preloading.  A
-- WARNING, because extension scripts run with client_min_messages >= warning.
DO $mode$
BEGIN
	IF NOT (SELECT s.preloaded FROM custos.status() s) THEN
		RAISE WARNING USING
			MESSAGE = 'custos is not in shared_preload_libraries: the background sealer and the DDL guard are off',
			DETAIL = 'Events are sealed only when custos.seal() is called, data keys are cached per transaction only, and ALTER/DROP TRIGGER on custos storage is refused only in sessions that have loaded custos.',
			HINT = 'Add custos to shared_preload_libraries and restart to enable them (session_preload_libraries = ''custos'' turns the DDL guard on for new sessions).';
	END IF;
END
$mode$;
