-- format: an independent verifier in SQL (pgcrypto's digest and hmac, no
-- custos function) recomputes every leaf, Merkle root and block hash from the
-- stored rows, following the encoding docs/format.md specifies, and finds
-- exactly what custos sealed.  It also checks the documented key derivations.
\set VERBOSITY terse
SELECT custos.seal() >= 0 AS flushed;

-- field(x): 4-byte big-endian length and the bytes; NULL is 0xFFFFFFFF alone
CREATE FUNCTION pg_temp.field(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN b IS NULL THEN '\xffffffff'::bytea ELSE int4send(length(b)) || b END
$$;
-- text: its UTF-8 bytes
CREATE FUNCTION pg_temp.utf8(t text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
SELECT convert_to(t, 'UTF8')
$$;
-- int8: 8 bytes big-endian two's complement
CREATE FUNCTION pg_temp.int8(i bigint) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
SELECT int8send(i)
$$;
-- timestamptz: int8 microseconds since 1970-01-01 00:00:00 UTC (extract
-- returns an exact numeric, so the product is exact)
CREATE FUNCTION pg_temp.ts(t timestamptz) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
SELECT int8send((extract(epoch FROM t) * 1000000)::bigint)
$$;

-- leaf = SHA-256(0x00 || 0x01 || field(column) ...)
CREATE FUNCTION pg_temp.leaf(e custos.event_log) RETURNS bytea LANGUAGE sql AS $$
SELECT digest('\x0001'::bytea
              || pg_temp.field(pg_temp.int8(e.id))
              || pg_temp.field(pg_temp.utf8(e.tenant))
              || pg_temp.field(pg_temp.ts(e.occurred_at))
              || pg_temp.field(pg_temp.ts(e.recorded_at))
              || pg_temp.field(pg_temp.utf8(e.actor_type))
              || pg_temp.field(pg_temp.utf8(e.category))
              || pg_temp.field(pg_temp.utf8(e.action))
              || pg_temp.field(pg_temp.utf8(e.resource_type))
              || pg_temp.field(pg_temp.utf8(e.resource_id))
              || pg_temp.field(pg_temp.utf8(e.resource_name))
              || pg_temp.field(pg_temp.utf8(e.target_level))
              || pg_temp.field(pg_temp.utf8(e.target_name))
              || pg_temp.field(pg_temp.utf8(e.outcome))
              || pg_temp.field(pg_temp.utf8(e.request_id))
              || pg_temp.field(pg_temp.utf8(e.access))
              || pg_temp.field(pg_temp.int8(e.actor_key_id))
              || pg_temp.field(pg_temp.int8(e.subject_key_id))
              || pg_temp.field(e.personal), 'sha256')
$$;

-- RFC 9162 Merkle tree hash over concatenated 32-byte leaf hashes: one leaf
-- is itself; otherwise k is the largest power of two below n and the node
-- is SHA-256(0x01 || MTH(first k) || MTH(rest))
CREATE FUNCTION pg_temp.mth(leaves bytea) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	n int := length(leaves) / 32;
	k int := 1;
BEGIN
	IF n = 1 THEN
		RETURN leaves;
	END IF;
	WHILE k * 2 < n LOOP
		k := k * 2;
	END LOOP;
	RETURN digest('\x01'::bytea || pg_temp.mth(substring(leaves FROM 1 FOR k * 32))
	                            || pg_temp.mth(substring(leaves FROM k * 32 + 1)), 'sha256');
END
$$;

-- block hash = SHA-256(0x02 || 0x01 || field(header value) ...)
CREATE FUNCTION pg_temp.block_hash(b custos.block) RETURNS bytea LANGUAGE sql AS $$
SELECT digest('\x0201'::bytea
              || pg_temp.field(pg_temp.utf8(b.tenant))
              || pg_temp.field(pg_temp.int8(b.block_no))
              || pg_temp.field(pg_temp.int8(b.first_seq))
              || pg_temp.field(pg_temp.int8(b.event_count))
              || pg_temp.field(pg_temp.int8(b.id_lo))
              || pg_temp.field(pg_temp.int8(b.id_hi))
              || pg_temp.field(pg_temp.ts(b.sealed_at))
              || pg_temp.field(b.prev_hash)
              || pg_temp.field(b.merkle_root), 'sha256')
$$;

-- the building blocks on known values
SELECT encode(pg_temp.field(NULL), 'hex') AS null_field,
       encode(pg_temp.field(''::bytea), 'hex') AS empty_field,
       encode(pg_temp.field(pg_temp.utf8('aé')), 'hex') AS utf8_field,
       encode(pg_temp.int8(-2), 'hex') AS int8_minus_2,
       encode(pg_temp.ts('1970-01-01 00:00:00.000001+00'), 'hex') AS ts_1us,
       encode(pg_temp.ts('1969-12-31 23:59:59.999999+00'), 'hex') AS ts_minus_1us,
       encode(pg_temp.ts('2024-03-01 10:00:00.123456+00'), 'hex') AS ts_2024;
-- RFC 9162 shape on stand-in leaves: 3 leaves hash as ((L0 L1) L2)
SELECT pg_temp.mth(decode(repeat('aa', 32) || repeat('bb', 32) || repeat('cc', 32), 'hex'))
     = digest('\x01'::bytea || digest('\x01'::bytea || decode(repeat('aa', 32) || repeat('bb', 32), 'hex'), 'sha256')
                            || decode(repeat('cc', 32), 'hex'), 'sha256') AS mth_3_leaves;

-- events that exercise the encoding: NULLs and empty strings, non-ASCII
-- text, numbers as resource ids, times before 1970 and with microseconds,
-- subjects (a second key id), JSON personal fields
SET custos.block_max_events = 16;
SELECT count(*) AS logged FROM custos.log_batch($$[
	{"tenant": "fmt-ü", "action": "ÄNDERN", "actor": "zoë", "subject": "jürgen", "description": "Grüße 🎉"},
	{"tenant": "fmt-ü", "action": "A", "category": "", "resource_type": "", "resource_id": 0},
	{"tenant": "fmt-ü", "action": "A", "occurred_at": "1969-07-20T20:17:40.000001Z", "outcome": "failure"},
	{"tenant": "fmt-ü", "action": "A", "occurred_at": -0.000001, "target_level": "ENDPOINT", "target_name": "cam-1"},
	{"tenant": "fmt-ü", "action": "A", "resource_id": 1.50, "resource_name": "n", "request_id": "r"},
	{"tenant": "fmt-ü", "action": "A", "metadata": {"a": [1, "b", true]}, "new_state": 3, "previous_state": "x"}
]$$);
-- blocks of every size from 1 to 9 leaves, and of 16 and 1 (17 events)
SELECT count(*) AS logged
  FROM generate_series(1, 9) n, generate_series(1, n) i,
       LATERAL custos.log(jsonb_build_object('tenant', 'fmt-' || n, 'action', 'A' || i));
SELECT count(*) AS logged
  FROM generate_series(1, 17) i, LATERAL custos.log(jsonb_build_object('tenant', 'fmt-17', 'action', 'A' || i));
SELECT custos.seal() AS sealed;
RESET custos.block_max_events;
SELECT tenant, block_no, event_count FROM custos.block WHERE tenant LIKE 'fmt-%' ORDER BY tenant COLLATE "C", block_no;

-- every leaf of every block in the database, recomputed from its event
CREATE TEMP TABLE leaf_check AS
SELECT b.tenant, b.block_no, u.i, u.id,
       substring(b.leaves FROM (u.i - 1)::int * 32 + 1 FOR 32) AS stored,
       pg_temp.leaf(e) AS recomputed
  FROM custos.block b
 CROSS JOIN LATERAL unnest(b.event_ids) WITH ORDINALITY u(id, i)
  LEFT JOIN custos.event_log e ON e.id = u.id;
SELECT count(*) FILTER (WHERE tenant LIKE 'fmt-%') AS fmt_leaves,
       count(*) = (SELECT count(*) FROM custos.event_log WHERE id < (SELECT watermark FROM custos.sealer_state)) AS every_sealed_event,
       bool_and(stored = recomputed) AS all_leaves_match,
       count(*) FILTER (WHERE stored IS DISTINCT FROM recomputed) AS mismatches
  FROM leaf_check;

-- every Merkle root and block hash, and every link
SELECT count(*) FILTER (WHERE b.tenant LIKE 'fmt-%') AS fmt_blocks,
       bool_and(pg_temp.mth(b.leaves) = b.merkle_root) AS all_roots_match,
       bool_and(pg_temp.block_hash(b) = b.block_hash) AS all_block_hashes_match,
       bool_and(b.prev_hash = coalesce(p.block_hash, decode(repeat('00', 32), 'hex'))) AS all_links_match
  FROM custos.block b
  LEFT JOIN custos.block p ON p.tenant = b.tenant AND p.block_no = b.block_no - 1;

-- the digest head is the last block hash, recomputed
SELECT t AS tenant, custos.digest(t) ->> 'head' = encode(pg_temp.block_hash(b), 'hex') AS head_matches
  FROM (VALUES ('fmt-ü'), ('fmt-17')) v(t)
  JOIN LATERAL (SELECT * FROM custos.block WHERE tenant = v.t ORDER BY block_no DESC LIMIT 1) b ON true;

-- personal = nonce (12 bytes) || AES-256-GCM ciphertext || tag (16 bytes)
-- of the jsonb text of the personal fields present (GCM does not pad)
SELECT e.action,
       length(l.personal) - 28 = octet_length(jsonb_strip_nulls(jsonb_build_object(
           'actor', e.actor, 'actor_name', e.actor_name, 'source_ip', e.source_ip::text,
           'user_agent', e.user_agent, 'subject', e.subject, 'description', e.description,
           'previous_state', e.previous_state, 'new_state', e.new_state, 'metadata', e.metadata))::text)
         AS ciphertext_is_plaintext_length
  FROM custos.events e JOIN custos.event_log l USING (id)
 WHERE e.tenant = 'fmt-ü' ORDER BY e.id;

-- key derivation: tenant key = HMAC-SHA-256(installation secret,
-- "tenant" || 0x00 || tenant); scope_ref = HMAC-SHA-256(tenant key,
-- scope || 0x00 || value); an actor's pseudonym is "anon-" and the first 12
-- hex digits of HMAC-SHA-256(tenant key, "pseudonym" || 0x00 || actor); the
-- period is the day of recording since 1970-01-01 UTC
CREATE TEMP TABLE tk AS
SELECT hmac('tenant'::bytea || '\x00'::bytea || convert_to('fmt-ü', 'UTF8'), secret, 'sha256') AS key
  FROM custos.installation;
SELECT k.scope,
       k.scope_ref = hmac(convert_to(k.scope, 'UTF8') || '\x00'::bytea
                          || convert_to(CASE k.scope WHEN 'actor' THEN 'zoë' ELSE 'jürgen' END, 'UTF8'),
                          tk.key, 'sha256') AS scope_ref_matches,
       k.pseudonym IS NOT DISTINCT FROM
         CASE k.scope WHEN 'actor'
              THEN 'anon-' || left(encode(hmac('pseudonym'::bytea || '\x00'::bytea || convert_to('zoë', 'UTF8'),
                                               tk.key, 'sha256'), 'hex'), 12) END AS pseudonym_matches,
       k.period = floor(extract(epoch FROM l.recorded_at) / 86400) AS period_matches,
       k.tenant = l.tenant AS tenant_matches
  FROM custos.event_log l
  JOIN custos.data_key k ON k.key_id IN (l.actor_key_id, l.subject_key_id), tk
 WHERE l.tenant = 'fmt-ü' AND l.action = 'ÄNDERN'
 ORDER BY k.scope;

-- and custos agrees
SELECT bool_and(ok) AS verify_ok FROM custos.verify();
