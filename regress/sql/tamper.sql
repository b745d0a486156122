-- tamper: an attacker with superuser rights bypasses the guard triggers
-- (session_replication_role = replica) and alters storage; custos.verify()
-- finds every change, says what kind it is and where.  Each case runs in a
-- transaction that is rolled back, so each starts from the intact chain.
\set VERBOSITY terse
SELECT custos.seal() >= 0 AS flushed;

-- tenant "tamper": 9 events in blocks of 3; tenant "tamper-x" has 2 events
-- interleaved with them (relative ids E2 and E6)
--   block 0: E0 E1 E3 (seq 0-2), window [E0, E4)
--   block 1: E4 E5 E7 (seq 3-5), window [E4, E8)
--   block 2: E8 E9 E10 (seq 6-8), window [E8, E11)
SET custos.block_max_events = 3;
CREATE TEMP TABLE ev AS
SELECT n - 1 AS rel, id
  FROM custos.log_batch($$[
	{"tenant": "tamper", "action": "A0", "actor": "alice", "subject": "s0"},
	{"tenant": "tamper", "action": "A1", "actor": "alice"},
	{"tenant": "tamper-x", "action": "X0"},
	{"tenant": "tamper", "action": "A2", "actor": "bob"},
	{"tenant": "tamper", "action": "A3", "actor": "bob", "outcome": "denied"},
	{"tenant": "tamper", "action": "A4", "actor": "carol"},
	{"tenant": "tamper-x", "action": "X1"},
	{"tenant": "tamper", "action": "A5", "occurred_at": "2024-01-01T00:00:00Z"},
	{"tenant": "tamper", "action": "A6", "resource_id": "r6"},
	{"tenant": "tamper", "action": "A7", "resource_id": "r7"},
	{"tenant": "tamper", "action": "A8", "metadata": {"n": 8}}
  ]$$) WITH ORDINALITY AS b(id, n);
SELECT custos.seal() AS sealed;
RESET custos.block_max_events;
CREATE FUNCTION pg_temp.e(rel int) RETURNS bigint LANGUAGE sql STABLE AS $$
SELECT id FROM ev WHERE ev.rel = $1
$$;

-- the layout above, as sealed
SELECT e.id - pg_temp.e(0) AS rel_id, e.tenant, e.action, e.seq, e.block_no
  FROM custos.events e WHERE e.tenant LIKE 'tamper%' ORDER BY e.id;

-- the digest an auditor kept of the intact chain
CREATE TEMP TABLE kept AS SELECT custos.digest('tamper') AS d;

-- verify one tenant, event ids shown relative to E0 (forged ids below E0 as they are)
CREATE FUNCTION pg_temp.check(t text DEFAULT 'tamper', dg jsonb DEFAULT NULL)
RETURNS TABLE (ok boolean, failure text, failed_seq bigint, failed_event text, failed_block bigint, detail text)
LANGUAGE sql AS $$
SELECT v.ok, v.failure, v.failed_seq,
       CASE WHEN v.failed_event_id >= pg_temp.e(0) THEN 'E' || (v.failed_event_id - pg_temp.e(0))
            ELSE v.failed_event_id::text END,
       v.failed_block,
       CASE WHEN v.failed_event_id >= pg_temp.e(0)
            THEN regexp_replace(v.detail, '\mevent ' || v.failed_event_id || '\M', 'event E' || (v.failed_event_id - pg_temp.e(0)))
            ELSE v.detail END
  FROM custos.verify(t, dg) v
$$;

-- the block hash, recomputed from the header as docs/format.md specifies
-- (the format test checks this function against every stored block)
CREATE FUNCTION pg_temp.field(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN b IS NULL THEN '\xffffffff'::bytea ELSE int4send(length(b)) || b END
$$;
CREATE FUNCTION pg_temp.block_hash(b custos.block) RETURNS bytea LANGUAGE sql AS $$
SELECT digest('\x0201'::bytea
              || pg_temp.field(convert_to(b.tenant, 'UTF8'))
              || pg_temp.field(int8send(b.block_no))
              || pg_temp.field(int8send(b.first_seq))
              || pg_temp.field(int8send(b.event_count::bigint))
              || pg_temp.field(int8send(b.id_lo))
              || pg_temp.field(int8send(b.id_hi))
              || pg_temp.field(int8send((extract(epoch FROM b.sealed_at) * 1000000)::bigint))
              || pg_temp.field(b.prev_hash)
              || pg_temp.field(b.merkle_root), 'sha256')
$$;

-- intact
SELECT * FROM pg_temp.check();
SELECT * FROM pg_temp.check(dg => (SELECT d FROM kept));
SELECT * FROM pg_temp.check('tamper-x');

-- ---------------------------------------------------------------------------
-- Events
-- ---------------------------------------------------------------------------

-- a clear-text column
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET action = 'A3-EDITED' WHERE id = pg_temp.e(4);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- a nullable clear-text column, NULL to a value and a value to NULL
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET category = 'x' WHERE id = pg_temp.e(9);
SELECT * FROM pg_temp.check();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET resource_id = NULL WHERE id = pg_temp.e(9);
SELECT * FROM pg_temp.check();
ROLLBACK;
-- NULL is not the empty string
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET resource_type = '' WHERE id = pg_temp.e(10);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- a timestamp, by one microsecond
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET occurred_at = occurred_at + interval '1 microsecond' WHERE id = pg_temp.e(7);
SELECT * FROM pg_temp.check();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET recorded_at = recorded_at - interval '1 day' WHERE id = pg_temp.e(0);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- the principal that appended it
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET access = 'role:someone_else' WHERE id = pg_temp.e(8);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- one bit of the personal ciphertext
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET personal = set_byte(personal, 20, get_byte(personal, 20) # 1) WHERE id = pg_temp.e(1);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- the personal ciphertext of another event of the same tenant and actor
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET personal = (SELECT personal FROM custos.event_log WHERE id = pg_temp.e(3)) WHERE id = pg_temp.e(4);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- the data keys an event points to
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET actor_key_id = (SELECT actor_key_id FROM custos.event_log WHERE id = pg_temp.e(3)) WHERE id = pg_temp.e(5);
SELECT * FROM pg_temp.check();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET subject_key_id = NULL WHERE id = pg_temp.e(0);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- an event moved to another tenant: gone from one chain, forged into the other
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET tenant = 'tamper-x' WHERE id = pg_temp.e(5);
SELECT * FROM pg_temp.check();
SELECT * FROM pg_temp.check('tamper-x');
ROLLBACK;

-- a middle event deleted
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.event_log WHERE id = pg_temp.e(5);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- the first and the last event deleted
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.event_log WHERE id = pg_temp.e(0);
SELECT * FROM pg_temp.check();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.event_log WHERE id = pg_temp.e(10);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- an event's id moved past the watermark, where events are only pending
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET id = (SELECT watermark + 1000 FROM custos.sealer_state) WHERE id = pg_temp.e(9);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- a forged event (a copy of E1) before the first block's window
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO custos.event_log SELECT 0, tenant, occurred_at, recorded_at, actor_type, category, action,
       resource_type, resource_id, resource_name, target_level, target_name, outcome, request_id,
       access, actor_key_id, subject_key_id, personal
  FROM custos.event_log WHERE id = pg_temp.e(1);
SELECT * FROM pg_temp.check();
ROLLBACK;
-- the same with a negative id
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO custos.event_log SELECT -7, tenant, occurred_at, recorded_at, actor_type, category, action,
       resource_type, resource_id, resource_name, target_level, target_name, outcome, request_id,
       access, actor_key_id, subject_key_id, personal
  FROM custos.event_log WHERE id = pg_temp.e(1);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- a forged event inside a sealed window: tamper-x's E6 is deleted and a
-- copy of E5 takes its id, inside block 1's window
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.event_log WHERE id = pg_temp.e(6);
INSERT INTO custos.event_log SELECT pg_temp.e(6), tenant, occurred_at, recorded_at, actor_type, category, action,
       resource_type, resource_id, resource_name, target_level, target_name, outcome, request_id,
       access, actor_key_id, subject_key_id, personal
  FROM custos.event_log WHERE id = pg_temp.e(5);
SELECT * FROM pg_temp.check();
SELECT * FROM pg_temp.check('tamper-x');
ROLLBACK;

-- two events of a block swap ids (and so positions)
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET id = -pg_temp.e(8) WHERE id = pg_temp.e(8);
UPDATE custos.event_log SET id = pg_temp.e(8) WHERE id = pg_temp.e(9);
UPDATE custos.event_log SET id = pg_temp.e(9) WHERE id = -pg_temp.e(8);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- two events of different blocks swap ids
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.event_log SET id = -pg_temp.e(7) WHERE id = pg_temp.e(7);
UPDATE custos.event_log SET id = pg_temp.e(7) WHERE id = pg_temp.e(8);
UPDATE custos.event_log SET id = pg_temp.e(8) WHERE id = -pg_temp.e(7);
SELECT ok, failure, failed_seq, failed_event, failed_block FROM pg_temp.check();
ROLLBACK;

-- lowering the watermark does not hide sealed events: their blocks miss them
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.sealer_state SET watermark = pg_temp.e(4);
SELECT * FROM pg_temp.check();
ROLLBACK;

-- ---------------------------------------------------------------------------
-- Blocks
-- ---------------------------------------------------------------------------

-- a stored leaf
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET leaves = set_byte(leaves, 40, get_byte(leaves, 40) # 1) WHERE tenant = 'tamper' AND block_no = 1;
SELECT * FROM pg_temp.check();
ROLLBACK;

-- the Merkle root
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET merkle_root = set_byte(merkle_root, 0, get_byte(merkle_root, 0) # 1) WHERE tenant = 'tamper' AND block_no = 1;
SELECT * FROM pg_temp.check();
ROLLBACK;

-- the block hash
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET block_hash = set_byte(block_hash, 31, get_byte(block_hash, 31) # 1) WHERE tenant = 'tamper' AND block_no = 1;
SELECT * FROM pg_temp.check();
ROLLBACK;

-- the link to the previous block
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET prev_hash = set_byte(prev_hash, 0, get_byte(prev_hash, 0) # 1) WHERE tenant = 'tamper' AND block_no = 2;
SELECT * FROM pg_temp.check();
ROLLBACK;

-- header fields: sealing time, window, position
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET sealed_at = sealed_at - interval '1 hour' WHERE tenant = 'tamper' AND block_no = 0;
SELECT * FROM pg_temp.check();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET id_hi = id_hi + 1 WHERE tenant = 'tamper' AND block_no = 2;
SELECT * FROM pg_temp.check();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET first_seq = first_seq + 1 WHERE tenant = 'tamper' AND block_no = 2;
SELECT * FROM pg_temp.check();
ROLLBACK;

-- a middle block deleted (its events kept, or deleted too)
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.block WHERE tenant = 'tamper' AND block_no = 1;
SELECT * FROM pg_temp.check();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.event_log WHERE id IN (pg_temp.e(4), pg_temp.e(5), pg_temp.e(7));
DELETE FROM custos.block WHERE tenant = 'tamper' AND block_no = 1;
SELECT * FROM pg_temp.check();
ROLLBACK;

-- the last block deleted, its events kept: they are sealed but in no block
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.block WHERE tenant = 'tamper' AND block_no = 2;
SELECT * FROM pg_temp.check();
ROLLBACK;

-- ---------------------------------------------------------------------------
-- What only a kept digest reveals
-- ---------------------------------------------------------------------------

-- the tail cut off, block and events: consistent on its own, shorter than
-- the digest
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.event_log WHERE id IN (pg_temp.e(8), pg_temp.e(9), pg_temp.e(10));
DELETE FROM custos.block WHERE tenant = 'tamper' AND block_no = 2;
SELECT * FROM pg_temp.check();
SELECT * FROM pg_temp.check(dg => (SELECT d FROM kept));
ROLLBACK;

-- the whole chain gone
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.event_log WHERE tenant = 'tamper';
DELETE FROM custos.block WHERE tenant = 'tamper';
SELECT * FROM pg_temp.check();
SELECT * FROM pg_temp.check(dg => (SELECT d FROM kept));
ROLLBACK;

-- a changed block hash alone is caught without the digest
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET block_hash = set_byte(block_hash, 0, get_byte(block_hash, 0) # 1) WHERE tenant = 'tamper' AND block_no = 2;
SELECT * FROM pg_temp.check(dg => (SELECT d FROM kept));
ROLLBACK;

-- history rewritten consistently: the last block's header changed and its
-- hash recomputed.  The chain verifies on its own; the digest exposes it.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET sealed_at = sealed_at + interval '1 second' WHERE tenant = 'tamper' AND block_no = 2;
UPDATE custos.block b SET block_hash = pg_temp.block_hash(b) WHERE tenant = 'tamper' AND block_no = 2;
SELECT * FROM pg_temp.check();
SELECT * FROM pg_temp.check(dg => (SELECT d FROM kept));
ROLLBACK;

-- the same from a middle block on: block 1 changed, then every later block
-- relinked and rehashed
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE custos.block SET sealed_at = sealed_at + interval '1 second' WHERE tenant = 'tamper' AND block_no = 1;
UPDATE custos.block b SET block_hash = pg_temp.block_hash(b) WHERE tenant = 'tamper' AND block_no = 1;
UPDATE custos.block b SET prev_hash = p.block_hash FROM custos.block p
 WHERE b.tenant = 'tamper' AND b.block_no = 2 AND p.tenant = 'tamper' AND p.block_no = 1;
UPDATE custos.block b SET block_hash = pg_temp.block_hash(b) WHERE tenant = 'tamper' AND block_no = 2;
SELECT * FROM pg_temp.check();
SELECT * FROM pg_temp.check(dg => (SELECT d FROM kept));
ROLLBACK;

-- every change above was rolled back: the chain is intact again
SELECT * FROM pg_temp.check();
SELECT * FROM pg_temp.check(dg => (SELECT d FROM kept));
SELECT * FROM pg_temp.check('tamper-x');
SELECT bool_and(ok) AS all_tenants_ok FROM custos.verify();
