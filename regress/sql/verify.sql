-- verify: custos.verify() on intact chains, one tenant or all; custos.digest()
-- and verification against a kept digest; malformed digests.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT custos.seal() >= 0 AS flushed;
SET custos.block_max_events = 2;
SELECT count(*) AS logged
  FROM custos.log_batch($$[
	{"tenant": "verify-a", "action": "A1"}, {"tenant": "verify-b", "action": "B1"},
	{"tenant": "verify-a", "action": "A2", "subject": "s1"}, {"tenant": "verify-a", "action": "A3"},
	{"tenant": "verify-b", "action": "B2"}, {"tenant": "verify-a", "action": "A4"},
	{"tenant": "verify-a", "action": "A5", "metadata": {"k": [1, 2]}}
  ]$$);
SELECT custos.seal() AS sealed;
RESET custos.block_max_events;

-- one tenant
SELECT * FROM custos.verify('verify-a');
SELECT * FROM custos.verify(tenant => 'verify-b');

-- every tenant: one row per tenant that has events or blocks, all intact
SELECT * FROM custos.verify() WHERE tenant LIKE 'verify-%' ORDER BY tenant;
SELECT count(*) = (SELECT count(DISTINCT tenant) FROM custos.event_log) AS one_row_per_tenant,
       bool_and(ok) AS all_ok, sum(pending) AS pending,
       sum(events_checked) = (SELECT count(*) FROM custos.event_log) AS every_event_checked,
       sum(blocks_checked) = (SELECT count(*) FROM custos.block) AS every_block_checked
  FROM custos.verify(NULL);
SELECT array_agg(tenant) = array_agg(tenant ORDER BY tenant) AS ordered_by_tenant FROM custos.verify();

-- pending events are counted, not checked, and not part of the size
SELECT custos.log('{"tenant": "verify-a", "action": "A6"}') > 0 AS logged;
SELECT tenant, ok, events_checked, blocks_checked, pending, size FROM custos.verify('verify-a');

-- a tenant custos has never seen has an empty, intact chain
SELECT * FROM custos.verify('verify-nobody');

-- digest: the head of the chain, as an auditor keeps it
CREATE TEMP TABLE d AS SELECT custos.digest('verify-a') AS d1;
SELECT d1 - 'head' - 'sealed_at' - 'issued_at' AS digest,
       d1 ->> 'head' ~ '^[0-9a-f]{64}$' AS head_is_hex,
       d1 ->> 'head' = (SELECT encode(block_hash, 'hex') FROM custos.block
                         WHERE tenant = 'verify-a' ORDER BY block_no DESC LIMIT 1) AS head_is_last_block_hash,
       (d1 ->> 'sealed_at')::timestamptz = (SELECT sealed_at FROM custos.block
                         WHERE tenant = 'verify-a' ORDER BY block_no DESC LIMIT 1) AS sealed_at_is_last_block,
       (d1 ->> 'issued_at')::timestamptz <= clock_timestamp() AS issued_at_is_time
  FROM d;

-- round trip: the chain verifies against its own digest, with or without
-- the tenant argument
SELECT tenant, ok, events_checked, blocks_checked, pending, size, failure
  FROM custos.verify('verify-a', (SELECT d1 FROM d));
SELECT tenant, ok, size FROM custos.verify(NULL, (SELECT d1 FROM d));
SELECT tenant, ok, size FROM custos.verify(digest => (SELECT d1 FROM d));

-- the chain grows: an older digest still verifies
SELECT custos.seal() AS sealed;
SELECT tenant, ok, events_checked, blocks_checked, pending, size, failure
  FROM custos.verify('verify-a', (SELECT d1 FROM d));

-- digest of a tenant without blocks: block -1, size 0, a zero head
SELECT custos.digest('verify-nobody') - 'issued_at' AS empty_digest;
SELECT tenant, ok, size, failure FROM custos.verify('verify-nobody', custos.digest('verify-nobody'));
SELECT custos.digest(NULL) IS NULL AS strict;

-- a digest that does not match the chain (here the digest is doctored, not
-- the chain): another head or size at its block is "rewritten", a block the
-- chain does not have is "truncated"
SELECT tenant, ok, size, failure, failed_seq, failed_event_id, failed_block, detail
  FROM custos.verify('verify-a', jsonb_set((SELECT d1 FROM d), '{head}', to_jsonb(repeat('ab', 32))));
SELECT tenant, ok, size, failure, failed_seq, failed_event_id, failed_block, detail
  FROM custos.verify('verify-a', jsonb_set((SELECT d1 FROM d), '{size}', '4'));
SELECT tenant, ok, size, failure, failed_seq, failed_event_id, failed_block, detail
  FROM custos.verify('verify-a', jsonb_set(jsonb_set((SELECT d1 FROM d), '{block_no}', '7'), '{size}', '13'));

-- malformed digests
CREATE TEMP TABLE bad (n serial, what text, digest text);
INSERT INTO bad (what, digest) VALUES
	('an array',              '[]'),
	('a string',              '"verify-a"'),
	('empty object',          '{}'),
	('no head',               (SELECT (d1 - 'head')::text FROM d)),
	('no size',               (SELECT (d1 - 'size')::text FROM d)),
	('no block_no',           (SELECT (d1 - 'block_no')::text FROM d)),
	('no tenant',             (SELECT (d1 - 'tenant')::text FROM d)),
	('short head',            (SELECT jsonb_set(d1, '{head}', '"abcd"')::text FROM d)),
	('upper-case head',       (SELECT jsonb_set(d1, '{head}', to_jsonb(upper(d1 ->> 'head')))::text FROM d)),
	('non-hex head',          (SELECT jsonb_set(d1, '{head}', to_jsonb(repeat('xy', 32)))::text FROM d)),
	('head is a number',      (SELECT jsonb_set(d1, '{head}', '0')::text FROM d)),
	('block_no is a string',  (SELECT jsonb_set(d1, '{block_no}', '"1"')::text FROM d)),
	('size is null',          (SELECT jsonb_set(d1, '{size}', 'null')::text FROM d)),
	('tenant is a number',    (SELECT jsonb_set(d1, '{tenant}', '1')::text FROM d)),
	('block_no not integral', (SELECT jsonb_set(d1, '{block_no}', '1.5')::text FROM d)),
	('block_no out of range', (SELECT jsonb_set(d1, '{block_no}', '1e30')::text FROM d));
SELECT n, what, pg_temp.try(format('SELECT custos.verify(%L, %L::jsonb)', 'verify-a', digest)) AS result
  FROM bad ORDER BY n;

-- a digest of another tenant than the one asked for
SELECT pg_temp.try($$SELECT custos.verify('verify-b', custos.digest('verify-a'))$$) AS other_tenant;
