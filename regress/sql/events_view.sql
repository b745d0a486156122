-- events_view: a reader granted SELECT on custos.events and EXECUTE on the
-- decryption functions the view calls reads every field in clear, and
-- nothing of the storage or the keys behind it.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;

SELECT custos.seal() >= 0 AS flushed;
CREATE TEMP TABLE ids AS
SELECT n, id FROM custos.log_batch($$[
	{"tenant": "view", "action": "LOGIN", "actor": "u-1", "actor_name": "Ursula", "source_ip": "203.0.113.7",
	 "user_agent": "Mozilla/5.0", "outcome": "success"},
	{"tenant": "view", "action": "UPDATE", "actor": "u-1", "subject": "p-9", "description": "moved camera",
	 "previous_state": {"pan": 10}, "new_state": {"pan": 20}, "metadata": ["a", 1]}
]$$) WITH ORDINALITY AS b(id, n);
SELECT custos.seal() AS sealed;
GRANT SELECT ON TABLE ids TO PUBLIC;

CREATE ROLE regress_custos_reader;
GRANT SELECT ON custos.events TO regress_custos_reader;

-- SELECT on the view alone: the view's own columns, but the personal fields
-- need the decryption functions
SET ROLE regress_custos_reader;
SELECT i.n, e.tenant, e.action, e.outcome, e.seq, e.block_no, e.sealed, e.personal_data
  FROM custos.events e JOIN ids i USING (id) ORDER BY i.n;
SELECT pg_temp.try('SELECT actor FROM custos.events WHERE tenant = ''view''') AS actor_without_execute;
RESET ROLE;

GRANT EXECUTE ON FUNCTION custos.personal_text(bytea, bytea, bytea, text, boolean, text),
                          custos.personal_json(bytea, bytea, bytea, text, boolean, text)
   TO regress_custos_reader;
SET ROLE regress_custos_reader;
\x on
SELECT i.n, e.tenant, e.action, e.actor, e.actor_type, e.actor_name, e.source_ip, e.user_agent,
       e.subject, e.description, e.previous_state, e.new_state, e.metadata, e.outcome,
       e.seq, e.block_no, e.sealed, e.personal_data
  FROM custos.events e JOIN ids i USING (id) ORDER BY i.n;
\x off

-- storage, keys and the installation secret stay closed
SELECT pg_temp.try('SELECT count(*) FROM custos.event_log') AS event_log;
SELECT pg_temp.try('SELECT count(*) FROM custos.data_key') AS data_key;
SELECT pg_temp.try('SELECT count(*) FROM custos.block') AS block;
SELECT pg_temp.try('SELECT count(*) FROM custos.installation') AS installation;
SELECT pg_temp.try('SELECT count(*) FROM custos.sealer_state') AS sealer_state;
-- and so do the other functions
SELECT pg_temp.try($$SELECT custos.log('{"tenant": "view", "action": "A"}')$$) AS log;
SELECT pg_temp.try('SELECT custos.verify()') AS verify;
-- the decryption functions are no use without the keys
SELECT custos.personal_text(l, decode(repeat('00', 32), 'hex'), NULL, 'view', false, 'actor') AS with_a_guessed_key
  FROM (SELECT decode(repeat('00', 40), 'hex') AS l) s;
RESET ROLE;

-- decryption depends on the keys and the tenant only, never on what this
-- session decrypted before: right after the view decrypted an event, the
-- same ciphertext with a wrong key, another tenant (the AAD) or an altered
-- tag gives NULL
SELECT actor FROM custos.events WHERE id = (SELECT id FROM ids WHERE n = 1);
SELECT custos.personal_text(l.personal, k.key, NULL, l.tenant, false, 'actor') AS right_key,
       custos.personal_text(l.personal, decode(repeat('00', 32), 'hex'), NULL, l.tenant, false, 'actor') AS wrong_key,
       custos.personal_text(l.personal, k.key, NULL, 'another tenant', false, 'actor') AS wrong_tenant,
       custos.personal_text(set_byte(l.personal, length(l.personal) - 1, get_byte(l.personal, length(l.personal) - 1) # 1),
                            k.key, NULL, l.tenant, false, 'actor') AS altered_tag
  FROM custos.event_log l JOIN custos.data_key k ON k.key_id = l.actor_key_id
 WHERE l.id = (SELECT id FROM ids WHERE n = 1);

REVOKE ALL ON custos.events FROM regress_custos_reader;
REVOKE ALL ON FUNCTION custos.personal_text(bytea, bytea, bytea, text, boolean, text),
                       custos.personal_json(bytea, bytea, bytea, text, boolean, text)
    FROM regress_custos_reader;
REVOKE ALL ON TABLE ids FROM PUBLIC;
DROP ROLE regress_custos_reader;
