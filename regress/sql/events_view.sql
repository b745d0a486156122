-- events_view: a reader needs a principal.  A database role without one
-- sees no event at all; authenticated with a token of a principal that may
-- read the tenant's log, the same role reads every field in clear through
-- custos.events, and nothing of the installation secret.  The decryption
-- functions are no use without the keys the policies hand out.
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
GRANT SELECT ON TABLE ids TO PUBLIC;

-- the tenant, an owner of it, and a token (never printed)
SELECT custos.create_tenant('view', NULL, 'events view');
SELECT custos.create_principal('view', 'Vera Viewer', 'user', 'owner') AS viewer \gset
SELECT token AS viewer_token FROM custos.issue_token(:'viewer') \gset
SELECT custos.seal() AS sealed;

CREATE ROLE regress_custos_reader;

-- without a principal: the view and its tables answer, with no rows
SET ROLE regress_custos_reader;
SELECT count(*) AS events FROM custos.events;
SELECT count(*) AS event_log FROM custos.event_log;
SELECT count(*) AS data_keys FROM custos.data_key;
SELECT count(*) AS blocks FROM custos.block;
RESET ROLE;

-- with the owner's token: every field in clear
SET ROLE regress_custos_reader;
BEGIN;
SELECT custos.authenticate(:'viewer_token') ->> 'tenant' AS authenticated_for;
\x on
SELECT i.n, e.tenant, e.action, e.actor, e.actor_type, e.actor_name, e.source_ip, e.user_agent,
       e.subject, e.description, e.previous_state, e.new_state, e.metadata, e.outcome,
       e.seq, e.block_no, e.sealed, e.personal_data
  FROM custos.events e JOIN ids i USING (id) ORDER BY i.n;
\x off
-- the tenant's storage rows, as the policies allow
SELECT count(*) > 0 AS event_log, bool_and(tenant = 'view') AS only_view FROM custos.event_log;
SELECT count(*) > 0 AS data_keys, bool_and(tenant = 'view') AS only_view FROM custos.data_key;
SELECT count(*) > 0 AS blocks, bool_and(tenant = 'view') AS only_view FROM custos.block;
-- the installation secret stays closed, and so do the DBA's functions
SELECT pg_temp.try('SELECT count(*) FROM custos.installation') AS installation;
SELECT pg_temp.try('SELECT custos.verify()') AS verify;
SELECT pg_temp.try('SELECT custos.seal()') AS seal;
-- the decryption functions are no use without the keys
SELECT custos.personal_text(l, decode(repeat('00', 32), 'hex'), NULL, 'view', false, 'actor') AS with_a_guessed_key
  FROM (SELECT decode(repeat('00', 40), 'hex') AS l) s;
COMMIT;
-- the token binds for one transaction only
SELECT count(*) AS events_after_commit FROM custos.events;
RESET ROLE;

-- decryption depends on the keys and the tenant only, never on what this
-- session decrypted before: right after the view decrypted an event, the
-- same ciphertext with a wrong key, another tenant (the AAD) or an altered
-- tag gives NULL, and a failed decryption leaves nothing behind for the next
SELECT actor FROM custos.events WHERE id = (SELECT id FROM ids WHERE n = 1);
SELECT custos.personal_text(l.personal, k.key, NULL, l.tenant, false, 'actor') AS right_key,
       custos.personal_text(l.personal, decode(repeat('00', 32), 'hex'), NULL, l.tenant, false, 'actor') AS wrong_key,
       custos.personal_text(l.personal, k.key, NULL, 'another tenant', false, 'actor') AS wrong_tenant,
       custos.personal_text(set_byte(l.personal, length(l.personal) - 1, get_byte(l.personal, length(l.personal) - 1) # 1),
                            k.key, NULL, l.tenant, false, 'actor') AS altered_tag,
       custos.personal_text(l.personal, k.key, NULL, l.tenant, false, 'actor') AS right_key_again
  FROM custos.event_log l JOIN custos.data_key k ON k.key_id = l.actor_key_id
 WHERE l.id = (SELECT id FROM ids WHERE n = 1);

-- the reads above are audit events of their own: leave none queued
SELECT custos.seal() >= 0 AS flushed;
REVOKE ALL ON TABLE ids FROM PUBLIC;
SELECT custos.disable_principal(:'viewer');
DROP ROLE regress_custos_reader;
