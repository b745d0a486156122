-- log_batch: custos.log_batch() appends a JSON array of events atomically
-- and returns their ids in array order; one bad element rejects the whole
-- batch and the error names the element.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
CREATE FUNCTION pg_temp.written() RETURNS TABLE (events bigint, keys bigint, last_id bigint)
LANGUAGE sql AS $$
SELECT (SELECT count(*) FROM custos.event_log),
       (SELECT count(*) FROM custos.data_key),
       (SELECT last_value FROM custos.event_id_seq)
$$;

-- ids come back in array order, one per element, and are consecutive
CREATE TEMP TABLE batch AS
SELECT n, id
  FROM custos.log_batch($$[
	{"tenant": "batch-b", "action": "FIRST", "actor": "carol"},
	{"tenant": "batch-a", "action": "SECOND", "subject": "dave"},
	{"tenant": "batch-b", "action": "THIRD", "outcome": "failure"},
	{"tenant": "batch-a", "action": "FOURTH", "resource_id": 7}
  ]$$) WITH ORDINALITY AS b(id, n);
SELECT b.n, b.id - min(b.id) OVER () AS rel_id, e.tenant, e.action, e.actor = e.access AS default_actor,
       e.subject, e.outcome, e.resource_id
  FROM batch b JOIN custos.events e USING (id)
 ORDER BY b.n;

-- an empty array appends nothing
CREATE TEMP TABLE before AS SELECT * FROM pg_temp.written();
SELECT count(*) AS ids FROM custos.log_batch('[]');
SELECT w = b AS nothing_written FROM pg_temp.written() w, before b;

-- one bad element, wherever it is, rejects the whole batch; the context
-- names the element (counting from 0) and, where there is one, the field
\set VERBOSITY default
SELECT * FROM custos.log_batch($$[
	{"tenant": "batch-a", "action": "OK"},
	{"tenant": "batch-a", "action": "BAD", "outcome": "maybe"},
	{"tenant": "batch-a", "action": "OK"}
]$$);
SELECT * FROM custos.log_batch($$[
	{"tenant": "batch-a", "action": "OK"},
	{"tenant": "batch-a", "action": "OK"},
	{"tenant": "batch-a"}
]$$);
SELECT * FROM custos.log_batch($$[
	{"tenant": "batch-a", "action": "BAD", "id": 99},
	{"tenant": "batch-a", "action": "OK"}
]$$);
SELECT * FROM custos.log_batch($$[
	{"tenant": "batch-a", "action": "OK"},
	"not an event"
]$$);
SELECT * FROM custos.log_batch($$[
	{"tenant": "batch-a", "action": "OK"},
	[{"tenant": "batch-a", "action": "NESTED"}]
]$$);
SELECT * FROM custos.log_batch($$[
	{"tenant": "batch-a", "action": "OK"},
	{"tenant": "batch-a", "action": "OK", "source_ip": "300.1.1.1"}
]$$);
-- each element is bounded by custos.max_event_bytes
SET custos.max_event_bytes = 1024;
SELECT * FROM custos.log_batch(jsonb_build_array(
	jsonb_build_object('tenant', 'batch-a', 'action', 'OK'),
	jsonb_build_object('tenant', 'batch-a', 'action', 'OK'),
	jsonb_build_object('tenant', 'batch-a', 'action', 'BIG', 'description', repeat('d', 1000))));
RESET custos.max_event_bytes;
\set VERBOSITY terse

-- not an array
SELECT pg_temp.try($$SELECT custos.log_batch('{"tenant": "batch-a", "action": "A"}')$$) AS object;
SELECT pg_temp.try($$SELECT custos.log_batch('"[]"')$$) AS string;
SELECT pg_temp.try($$SELECT custos.log_batch('null')$$) AS json_null;
SELECT pg_temp.try($$SELECT custos.log_batch('3')$$) AS number;

-- custos.max_batch_events bounds the number of elements
SET custos.max_batch_events = 3;
SELECT pg_temp.try($$SELECT custos.log_batch('[{"tenant": "batch-a", "action": "A"}, {"tenant": "batch-a", "action": "A"},
	{"tenant": "batch-a", "action": "A"}, {"tenant": "batch-a", "action": "A"}]')$$) AS four;
SELECT w = b AS nothing_written FROM pg_temp.written() w, before b;
SELECT count(*) AS three FROM custos.log_batch('[{"tenant": "batch-a", "action": "A"}, {"tenant": "batch-a", "action": "A"},
	{"tenant": "batch-a", "action": "A"}]');
RESET custos.max_batch_events;
SELECT pg_temp.try(format('SELECT custos.log_batch(%L)',
	(SELECT jsonb_agg(jsonb_build_object('tenant', 'batch-a', 'action', 'A')) FROM generate_series(1, 1001)))) AS over_default;

-- a rolled-back transaction keeps none of a batch, nor the data keys it
-- created (ids drawn are gone: sequences are not transactional);
-- appending again for the same actor creates a key that exists
TRUNCATE before;
INSERT INTO before SELECT * FROM pg_temp.written();
BEGIN;
SELECT count(*) AS appended FROM custos.log_batch('[{"tenant": "batch-a", "action": "GONE", "actor": "erin"},
	{"tenant": "batch-a", "action": "GONE", "actor": "frank"}]');
ROLLBACK;
SELECT count(*) AS gone FROM custos.event_log WHERE action = 'GONE';
SELECT w.events = b.events AND w.keys = b.keys AS nothing_kept FROM pg_temp.written() w, before b;
BEGIN;
SELECT count(*) AS appended FROM custos.log_batch('[{"tenant": "batch-a", "action": "KEPT", "actor": "frank"}]');
SAVEPOINT s;
SELECT count(*) AS appended FROM custos.log_batch('[{"tenant": "batch-a", "action": "GONE", "actor": "grace"}]');
ROLLBACK TO SAVEPOINT s;
SELECT count(*) AS appended FROM custos.log_batch('[{"tenant": "batch-a", "action": "KEPT", "actor": "erin"},
	{"tenant": "batch-a", "action": "KEPT", "actor": "grace"}]');
COMMIT;
SELECT e.action, e.actor, e.personal_data, k.key_id IS NOT NULL AS key_exists
  FROM custos.events e JOIN custos.event_log l USING (id)
  LEFT JOIN custos.data_key k ON k.key_id = l.actor_key_id
 WHERE e.tenant = 'batch-a' AND e.action IN ('GONE', 'KEPT')
 ORDER BY e.id;

SELECT custos.seal() >= 0 AS sealed;
