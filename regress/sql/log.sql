-- log: custos.log() stores every field of a payload, fills in the defaults,
-- sets "access" itself, and refuses a bad payload with a specific SQLSTATE
-- without writing anything.
\set VERBOSITY terse
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- ids in this file, relative to the first one
CREATE TEMP TABLE ids (name text PRIMARY KEY, id bigint NOT NULL);

-- every field a payload may carry
INSERT INTO ids SELECT 'full', custos.log($${
	"tenant": "log-t1",
	"action": "UPDATE",
	"occurred_at": "2024-03-01T12:00:00.123456+02:00",
	"actor": "alice@example.com",
	"actor_type": "api_key",
	"actor_name": "Alice Example",
	"source_ip": "192.0.2.10/32",
	"user_agent": "curl/8.5.0",
	"category": "scheme",
	"resource_type": "SCHEME",
	"resource_id": "scheme-17",
	"resource_name": "Night shift",
	"target_level": "GROUP",
	"target_name": "Building A",
	"subject": "bob@example.com",
	"description": "Changed the recording schedule",
	"outcome": "denied",
	"previous_state": {"start": "22:00", "days": [1, 2]},
	"new_state": {"start": "23:00", "days": [1, 2, 3]},
	"metadata": {"ticket": 4711, "forced": true},
	"request_id": "req-0001"
}$$);
\x on
SELECT e.id - i.id AS rel_id, tenant, occurred_at, actor, actor_type, actor_name,
       source_ip, user_agent, category, action, resource_type, resource_id,
       resource_name, target_level, target_name, subject, description, outcome,
       previous_state, new_state, metadata, request_id,
       access = 'role:' || current_user AS access_is_caller, seq, block_no,
       sealed, personal_data
  FROM custos.events e JOIN ids i ON i.name = 'full'
 WHERE e.id = i.id;
\x off

-- the personal fields are not stored in clear, nor are actor and subject ids in the keys
SELECT position(convert_to('alice', 'UTF8') IN personal) = 0 AS actor_hidden,
       position(convert_to('Changed', 'UTF8') IN personal) = 0 AS description_hidden,
       subject_key_id IS NOT NULL AS has_subject_key,
       actor_key_id <> subject_key_id AS distinct_keys
  FROM custos.event_log WHERE id = (SELECT id FROM ids WHERE name = 'full');
SELECT scope, period = floor(extract(epoch FROM e.recorded_at) / 86400) AS period_is_day_of_recording,
       length(key) AS key_bytes, length(scope_ref) AS ref_bytes,
       pseudonym ~ '^anon-[0-9a-f]{12}$' AS pseudonym_format
  FROM custos.data_key k
  JOIN custos.event_log e ON k.key_id IN (e.actor_key_id, e.subject_key_id)
 WHERE e.id = (SELECT id FROM ids WHERE name = 'full')
 ORDER BY scope;

-- defaults: actor is the caller's access, actor_type user (system for the
-- actor "system"), outcome success, occurred_at the time of recording
INSERT INTO ids SELECT 'minimal', custos.log('{"tenant": "log-t1", "action": "LOGIN"}');
INSERT INTO ids SELECT 'system', custos.log('{"tenant": "log-t1", "action": "PURGE", "actor": "system"}');
SELECT i.name, e.actor = 'system' AS actor_is_system,
       e.actor = 'role:' || current_user AS actor_is_caller,
       e.access = 'role:' || current_user AS access_is_caller,
       e.actor_type, e.outcome,
       e.occurred_at = e.recorded_at AS occurred_is_recorded,
       e.category IS NULL AND e.subject IS NULL AND e.metadata IS NULL AS others_null
  FROM custos.events e JOIN ids i USING (id)
 WHERE i.name IN ('minimal', 'system')
 ORDER BY e.id;

-- JSON null is the same as an absent field
INSERT INTO ids SELECT 'nulls', custos.log('{"tenant": "log-t1", "action": "READ",
	"actor": null, "actor_type": null, "outcome": null, "occurred_at": null,
	"category": null, "source_ip": null, "metadata": null, "subject": null}');
SELECT e.actor = e.access AS actor_is_access, e.actor_type, e.outcome,
       e.occurred_at = e.recorded_at AS occurred_is_recorded,
       e.category IS NULL AS no_category, e.source_ip IS NULL AS no_ip,
       e.metadata IS NULL AS no_metadata, e.subject IS NULL AS no_subject,
       l.subject_key_id IS NULL AS no_subject_key
  FROM custos.events e JOIN custos.event_log l USING (id)
 WHERE e.id = (SELECT id FROM ids WHERE name = 'nulls');

-- occurred_at: RFC 3339 with any offset, or epoch seconds (integer or fractional)
INSERT INTO ids SELECT 'time-z', custos.log('{"tenant": "log-t1", "action": "A", "occurred_at": "2024-03-01T10:00:00.123456Z"}');
INSERT INTO ids SELECT 'time-offset', custos.log('{"tenant": "log-t1", "action": "A", "occurred_at": "2024-03-01T05:30:00.123456-04:30"}');
INSERT INTO ids SELECT 'time-epoch', custos.log('{"tenant": "log-t1", "action": "A", "occurred_at": 1700000000}');
INSERT INTO ids SELECT 'time-epoch-frac', custos.log('{"tenant": "log-t1", "action": "A", "occurred_at": 1700000000.123456}');
INSERT INTO ids SELECT 'time-epoch-neg', custos.log('{"tenant": "log-t1", "action": "A", "occurred_at": -1.5}');
SELECT i.name, e.occurred_at, extract(epoch FROM e.occurred_at) AS epoch
  FROM custos.events e JOIN ids i USING (id)
 WHERE i.name LIKE 'time-%'
 ORDER BY e.id;

-- resource_id may be a JSON number; it is stored as its text
INSERT INTO ids SELECT 'rid-int', custos.log('{"tenant": "log-t1", "action": "A", "resource_id": 42}');
INSERT INTO ids SELECT 'rid-dec', custos.log('{"tenant": "log-t1", "action": "A", "resource_id": 1.50}');
INSERT INTO ids SELECT 'rid-big', custos.log('{"tenant": "log-t1", "action": "A", "resource_id": 12345678901234567890}');
SELECT i.name, e.resource_id, pg_typeof(e.resource_id) AS type
  FROM custos.events e JOIN ids i USING (id)
 WHERE i.name LIKE 'rid-%'
 ORDER BY e.id;

-- source_ip is normalised as inet
INSERT INTO ids SELECT 'ip-host32', custos.log('{"tenant": "log-t1", "action": "A", "source_ip": "192.0.2.10/32"}');
INSERT INTO ids SELECT 'ip-net', custos.log('{"tenant": "log-t1", "action": "A", "source_ip": "198.51.100.0/24"}');
INSERT INTO ids SELECT 'ip-v6', custos.log('{"tenant": "log-t1", "action": "A", "source_ip": "2001:DB8:0:0::1"}');
INSERT INTO ids SELECT 'ip-mapped', custos.log('{"tenant": "log-t1", "action": "A", "source_ip": "::FFFF:192.0.2.1"}');
SELECT i.name, e.source_ip, pg_typeof(e.source_ip) AS type
  FROM custos.events e JOIN ids i USING (id)
 WHERE i.name LIKE 'ip-%'
 ORDER BY e.id;

-- text limits count bytes: 512 two-byte characters fit, 513 do not;
-- description is bounded only by the event size
INSERT INTO ids SELECT 'utf8-1024', custos.log(jsonb_build_object('tenant', 'log-t1', 'action', repeat('é', 512)));
INSERT INTO ids SELECT 'long-description', custos.log(jsonb_build_object('tenant', 'log-t1', 'action', 'A', 'description', repeat('d', 5000)));
SELECT i.name, octet_length(e.action) AS action_bytes, length(e.description) AS description_chars
  FROM custos.events e JOIN ids i USING (id)
 WHERE i.name IN ('utf8-1024', 'long-description')
 ORDER BY e.id;

-- ids are handed out in call order
SELECT count(*) AS events, bool_and(rank = rel) AS ids_in_call_order
  FROM (SELECT id - min(id) OVER () AS rel, rank() OVER (ORDER BY id) - 1 AS rank FROM ids) s;

-- ---------------------------------------------------------------------------
-- Errors.  Nothing is written by any of them: no event, no key, no id.
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM custos.event_log) AS events,
       (SELECT count(*) FROM custos.data_key) AS keys,
       (SELECT last_value FROM custos.event_id_seq) AS last_id;

CREATE TEMP TABLE bad (n serial, what text, payload text);
INSERT INTO bad (what, payload) VALUES
	('unknown field',           '{"tenant": "log-t1", "action": "A", "colour": "red"}'),
	('field names are exact',   '{"tenant": "log-t1", "Action": "A"}'),
	('id is set by custos',     '{"tenant": "log-t1", "action": "A", "id": 1}'),
	('recorded_at set by custos', '{"tenant": "log-t1", "action": "A", "recorded_at": "2024-01-01T00:00:00Z"}'),
	('access set by custos',    '{"tenant": "log-t1", "action": "A", "access": "role:someone_else"}'),
	('array',                   '[{"tenant": "log-t1", "action": "A"}]'),
	('string',                  '"an event"'),
	('number',                  '42'),
	('json null',               'null'),
	('missing tenant',          '{"action": "A"}'),
	('null tenant',             '{"tenant": null, "action": "A"}'),
	('empty tenant',            '{"tenant": "", "action": "A"}'),
	('missing action',          '{"tenant": "log-t1"}'),
	('empty action',            '{"tenant": "log-t1", "action": ""}'),
	('tenant is a number',      '{"tenant": 7, "action": "A"}'),
	('action is an object',     '{"tenant": "log-t1", "action": {"x": 1}}'),
	('actor is a boolean',      '{"tenant": "log-t1", "action": "A", "actor": true}'),
	('resource_id is an array', '{"tenant": "log-t1", "action": "A", "resource_id": [1]}'),
	('category is a number',    '{"tenant": "log-t1", "action": "A", "category": 1}'),
	('source_ip is a number',   '{"tenant": "log-t1", "action": "A", "source_ip": 167772161}'),
	('occurred_at is a boolean', '{"tenant": "log-t1", "action": "A", "occurred_at": false}'),
	('actor_type',              '{"tenant": "log-t1", "action": "A", "actor_type": "robot"}'),
	('actor_type is exact',     '{"tenant": "log-t1", "action": "A", "actor_type": "USER"}'),
	('outcome',                 '{"tenant": "log-t1", "action": "A", "outcome": "ok"}'),
	('target_level',            '{"tenant": "log-t1", "action": "A", "target_level": "tenant"}'),
	('bad inet',                '{"tenant": "log-t1", "action": "A", "source_ip": "192.0.2.256"}'),
	('empty inet',              '{"tenant": "log-t1", "action": "A", "source_ip": ""}'),
	('bad time',                '{"tenant": "log-t1", "action": "A", "occurred_at": "yesterday at noon"}'),
	('day out of range',        '{"tenant": "log-t1", "action": "A", "occurred_at": "2024-02-30T00:00:00Z"}'),
	('epoch out of range',      '{"tenant": "log-t1", "action": "A", "occurred_at": 1e300}'),
	('infinite time',           '{"tenant": "log-t1", "action": "A", "occurred_at": "infinity"}'),
	('-infinite time',          '{"tenant": "log-t1", "action": "A", "occurred_at": "-infinity"}'),
	-- jsonb itself refuses \u0000, so the payload never reaches custos
	('NUL in a text field',     '{"tenant": "log-t1", "action": "A", "actor_name": "a\u0000b"}'),
	('NUL in a JSON field',     '{"tenant": "log-t1", "action": "A", "metadata": {"k": "\u0000"}}'),
	('tenant too long',         format('{"tenant": "%s", "action": "A"}', repeat('t', 1025))),
	('action 513 x 2 bytes',    format('{"tenant": "log-t1", "action": "%s"}', repeat('é', 513))),
	('actor too long',          format('{"tenant": "log-t1", "action": "A", "actor": "%s"}', repeat('a', 1025))),
	('request_id too long',     format('{"tenant": "log-t1", "action": "A", "request_id": "%s"}', repeat('r', 1025))),
	('event too large',         format('{"tenant": "log-t1", "action": "A", "description": "%s"}', repeat('d', 70000))),
	('enum checked after type', '{"tenant": "log-t1", "action": "A", "outcome": 1}');
SELECT n, what, pg_temp.try(format('SELECT custos.log(%L::jsonb)', payload)) AS result
  FROM bad ORDER BY n;

-- custos.max_event_bytes bounds the whole payload
SET custos.max_event_bytes = 1024;
SELECT pg_temp.try($$SELECT custos.log(jsonb_build_object('tenant', 'log-t1', 'action', 'A', 'description', repeat('d', 1000)))$$) AS over_limit;
RESET custos.max_event_bytes;

-- a NULL payload is an error, not a silent NULL id
SELECT pg_temp.try('SELECT custos.log(NULL)') AS null_event,
       pg_temp.try('SELECT custos.log_batch(NULL)') AS null_batch;

-- the limits could weaken auditing: only superusers may change them
SELECT name, context FROM pg_settings WHERE name LIKE 'custos.%' ORDER BY name;

SELECT (SELECT count(*) FROM custos.event_log) = events AS no_event_written,
       (SELECT count(*) FROM custos.data_key) = keys AS no_key_written,
       (SELECT last_value FROM custos.event_id_seq) = last_id AS no_id_drawn
  FROM before;

-- leave nothing pending for later tests
SELECT custos.seal() >= 0 AS sealed;
