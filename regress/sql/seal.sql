-- seal: custos.seal() places committed events into per-tenant blocks with
-- gapless positions, hash-linked block to block, and advances the watermark.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
-- the id the next append will draw
CREATE FUNCTION pg_temp.next_id() RETURNS bigint LANGUAGE sql AS $$
SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM custos.event_id_seq
$$;

-- start with nothing pending from earlier tests
SELECT custos.seal() >= 0 AS flushed;
CREATE TEMP TABLE s0 AS SELECT * FROM custos.status();
SELECT preloaded, pending, watermark = pg_temp.next_id() AS watermark_at_next_id
  FROM s0;

-- round 1: eight events of two interleaved tenants
CREATE TEMP TABLE r1 AS
SELECT n, custos.log(jsonb_build_object('tenant', CASE WHEN n % 3 = 0 THEN 'seal-b' ELSE 'seal-a' END,
                                        'action', 'R1-' || n)) AS id
  FROM generate_series(1, 8) n;
CREATE TEMP TABLE base AS SELECT min(id) AS id FROM r1;

-- pending: not sealed, no position, no block
SELECT e.id - base.id AS rel_id, e.tenant, e.action, e.sealed, e.seq, e.block_no
  FROM custos.events e, base WHERE e.id >= base.id ORDER BY e.id;
SELECT s.pending, s.watermark = s0.watermark AS watermark_unchanged
  FROM custos.status() s, s0;

SET custos.block_max_events = 3;
SELECT custos.seal() AS sealed;

-- per tenant: positions from 0 without gaps, in id order; blocks of at most 3
SELECT e.id - base.id AS rel_id, e.tenant, e.action, e.sealed, e.seq, e.block_no
  FROM custos.events e, base WHERE e.id >= base.id ORDER BY e.tenant, e.seq;

SELECT b.tenant, b.block_no, b.first_seq, b.event_count,
       b.id_lo - base.id AS rel_id_lo, b.id_hi - base.id AS rel_id_hi,
       (SELECT array_agg(x - base.id ORDER BY o) FROM unnest(b.event_ids) WITH ORDINALITY u(x, o)) AS rel_event_ids,
       b.format
  FROM custos.block b, base WHERE b.tenant LIKE 'seal-%' ORDER BY b.tenant, b.block_no;

-- the shape of every block: leaves are 32 bytes each, ids ascend inside
-- the window, and the window holds exactly the block's events of its tenant
SELECT b.tenant, b.block_no,
       length(b.leaves) = 32 * b.event_count AS leaves_len,
       cardinality(b.event_ids) = b.event_count AS ids_len,
       length(b.merkle_root) = 32 AND length(b.block_hash) = 32 AND length(b.prev_hash) = 32 AS hash_lens,
       (SELECT bool_and(x >= b.id_lo AND x < b.id_hi) FROM unnest(b.event_ids) x) AS ids_in_window,
       b.event_ids = (SELECT array_agg(x ORDER BY x) FROM unnest(b.event_ids) x) AS ids_ascending,
       b.event_ids = (SELECT array_agg(e.id ORDER BY e.id) FROM custos.event_log e
                       WHERE e.tenant = b.tenant AND e.id >= b.id_lo AND e.id < b.id_hi) AS window_exact
  FROM custos.block b WHERE b.tenant LIKE 'seal-%' ORDER BY b.tenant, b.block_no;

-- a round's blocks of one tenant tile the round's id range without gap or
-- overlap, from the old watermark to the new one
SELECT b.tenant,
       min(b.id_lo) = s0.watermark AS starts_at_old_watermark,
       max(b.id_hi) = s.watermark AS ends_at_new_watermark,
       bool_and(b.id_lo = coalesce(p.id_hi, b.id_lo)) AS contiguous
  FROM custos.block b
  LEFT JOIN custos.block p ON p.tenant = b.tenant AND p.block_no = b.block_no - 1,
       s0, custos.status() s
 WHERE b.tenant LIKE 'seal-%'
 GROUP BY b.tenant, s0.watermark, s.watermark ORDER BY b.tenant;

-- each block links to the hash of the one before; the first to 32 zero bytes
SELECT b.tenant, b.block_no,
       CASE WHEN b.block_no = 0 THEN b.prev_hash = decode(repeat('00', 32), 'hex')
            ELSE b.prev_hash = p.block_hash END AS links_to_previous,
       b.block_hash <> b.prev_hash AS distinct_hash
  FROM custos.block b
  LEFT JOIN custos.block p ON p.tenant = b.tenant AND p.block_no = b.block_no - 1
 WHERE b.tenant LIKE 'seal-%' ORDER BY b.tenant, b.block_no;

-- one round, one sealing time
SELECT count(DISTINCT sealed_at) AS sealing_times FROM custos.block WHERE tenant LIKE 'seal-%';

SELECT s.pending, s.sealed_total - s0.sealed_total AS newly_sealed,
       s.watermark = (SELECT max(id) + 1 FROM r1) AS watermark_past_round,
       s.last_seal_at IS NOT NULL AS has_sealed
  FROM custos.status() s, s0;

-- nothing pending: sealing again does nothing
SELECT custos.seal() AS sealed_again;
SELECT count(*) AS blocks FROM custos.block WHERE tenant LIKE 'seal-%';

-- round 2 continues seal-a's chain, and starts seal-c's
CREATE TEMP TABLE r2 AS
SELECT n, custos.log(jsonb_build_object('tenant', t, 'action', 'R2-' || n)) AS id
  FROM (VALUES (1, 'seal-a'), (2, 'seal-c'), (3, 'seal-a')) v(n, t);
SELECT custos.seal() AS sealed;
SELECT b.tenant, b.block_no, b.first_seq, b.event_count,
       b.id_lo - base.id AS rel_id_lo, b.id_hi - base.id AS rel_id_hi,
       (SELECT array_agg(x - base.id ORDER BY o) FROM unnest(b.event_ids) WITH ORDINALITY u(x, o)) AS rel_event_ids,
       CASE WHEN b.block_no = 0 THEN b.prev_hash = decode(repeat('00', 32), 'hex')
            ELSE b.prev_hash = p.block_hash END AS links_to_previous
  FROM custos.block b
  LEFT JOIN custos.block p ON p.tenant = b.tenant AND p.block_no = b.block_no - 1,
       base
 WHERE b.tenant LIKE 'seal-%' AND b.id_hi > (SELECT min(id) FROM r2)
 ORDER BY b.tenant, b.block_no;
SELECT e.id - base.id AS rel_id, e.tenant, e.action, e.seq, e.block_no
  FROM custos.events e, base WHERE e.id IN (SELECT id FROM r2) ORDER BY e.id;
RESET custos.block_max_events;

-- ids drawn by a transaction that rolled back: the round seals nothing and
-- the watermark moves past them
BEGIN;
SELECT custos.log('{"tenant": "seal-a", "action": "ROLLED-BACK"}') > 0 AS logged;
ROLLBACK;
SELECT custos.seal() AS sealed;
SELECT s.pending, s.watermark = pg_temp.next_id() AS watermark_at_next_id
  FROM custos.status() s;

-- a transaction may seal its own events
BEGIN;
SELECT custos.log('{"tenant": "seal-a", "action": "OWN"}') > 0 AS logged;
SELECT custos.seal() AS sealed;
SELECT action, seq, sealed FROM custos.events WHERE tenant = 'seal-a' AND action = 'OWN';
COMMIT;

-- sealing must see events that commit while it waits: refused in
-- REPEATABLE READ and SERIALIZABLE, whatever is pending
SELECT custos.log('{"tenant": "seal-a", "action": "WAITING"}') > 0 AS logged;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.try('SELECT custos.seal()') AS repeatable_read;
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT pg_temp.try('SELECT custos.seal()') AS serializable;
ROLLBACK;
SELECT pending FROM custos.status();
SELECT custos.seal() AS sealed_read_committed;

-- custos.seal_batch_events caps one round; custos.seal() runs as many
-- rounds as it takes, each adding a block of at most that many events
SET custos.seal_batch_events = 100;
CREATE TEMP TABLE r3 AS
SELECT id FROM custos.log_batch((SELECT jsonb_agg(jsonb_build_object('tenant', 'seal-d', 'action', 'BULK-' || n))
                                   FROM generate_series(1, 250) n)) AS id;
SELECT custos.seal() AS sealed;
RESET custos.seal_batch_events;
SELECT b.block_no, b.first_seq, b.event_count,
       b.id_lo - (SELECT min(id) FROM r3) AS rel_id_lo, b.id_hi - (SELECT min(id) FROM r3) AS rel_id_hi
  FROM custos.block b WHERE b.tenant = 'seal-d' ORDER BY b.block_no;
SELECT count(*) AS events, min(seq) AS first_seq, max(seq) AS last_seq, count(DISTINCT seq) AS distinct_seqs
  FROM custos.events WHERE tenant = 'seal-d';

SELECT s.pending, s.sealed_total - s0.sealed_total AS sealed_in_this_test,
       s.watermark = pg_temp.next_id() AS watermark_at_next_id
  FROM custos.status() s, s0;

SELECT tenant, ok, events_checked, blocks_checked, pending, size
  FROM custos.verify() WHERE tenant LIKE 'seal-%' ORDER BY tenant;
