-- retention: per-tenant policies, anonymisation, retention, erasure and
-- legal holds, run "as of" later times (the superuser-only clock), with the
-- chain verifying after every step.
\set VERBOSITY terse
CREATE EXTENSION IF NOT EXISTS pageinspect;
-- run a statement: ok, or its SQLSTATE and message
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;
-- does any page of a relation contain these bytes?
CREATE FUNCTION pg_temp.on_disk(rel regclass, needle bytea) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	blk integer;
BEGIN
	FOR blk IN 0 .. pg_relation_size(rel) / current_setting('block_size')::integer - 1 LOOP
		IF position(needle IN get_raw_page(rel::text, blk)) > 0 THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END
$$;
CREATE FUNCTION pg_temp.verify_all() RETURNS TABLE (tenant text, ok boolean, failure text, detail text)
	LANGUAGE sql AS $$
	SELECT v.tenant, v.ok, v.failure, v.detail FROM custos.verify() v WHERE v.tenant LIKE 'ret-%' ORDER BY 1
$$;

-- ---------------------------------------------------------------------------
-- tenants and policies
-- ---------------------------------------------------------------------------
SELECT custos.create_tenant('ret-a', NULL, 'anonymises after 7, deletes after 30 days');
SELECT custos.create_tenant('ret-b', NULL, 'installation default');
SELECT custos.create_tenant('ret-c', NULL, 'legal holds');
SELECT * FROM custos.retention_bounds();
SELECT custos.set_retention_policy('ret-a', 30, 7);
SELECT custos.set_retention_policy('ret-c', 10, 5);
-- bounds and shapes
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-a', 0)$$);
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-a', 4000)$$);
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-a', NULL)$$);
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-a', 30, 31)$$);
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-a', 30, 0)$$);
SELECT pg_temp.try($$SELECT custos.set_retention_policy('nobody', 30)$$);
SET custos.retention_max_days = 20;
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-a', 30, 7)$$);
RESET custos.retention_max_days;
SELECT tenant, retention_days, anonymize_days, explicit, on_hold
  FROM custos.retention_policies WHERE tenant LIKE 'ret-%' ORDER BY 1;
-- every change is an audit event of the tenant
SELECT tenant, category, action, resource_type, resource_id, previous_state, new_state
  FROM custos.events WHERE resource_type = 'RETENTION_POLICY' ORDER BY id;

-- who may change it: the tenant's owners and admins, not its members
CREATE ROLE regress_ret_user;
SELECT custos.create_principal('ret-a', 'Mia Member', 'user', 'member') AS member_id \gset
SELECT custos.create_principal('ret-a', 'Olga Owner', 'user', 'owner') AS owner_id \gset
SELECT token AS member_token FROM custos.issue_token(:'member_id', 'personal', '1 hour', 'ret') \gset
SELECT token AS owner_token FROM custos.issue_token(:'owner_id', 'personal', '1 hour', 'ret') \gset
SET ROLE regress_ret_user;
BEGIN;
SELECT custos.authenticate(:'member_token') IS NOT NULL AS member_signed_in;
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-a', 60, 7)$$);
SELECT pg_temp.try($$CALL custos.apply_retention()$$);
COMMIT;
BEGIN;
SELECT custos.authenticate(:'owner_token') IS NOT NULL AS owner_signed_in;
SELECT custos.set_retention_policy('ret-a', 30, 7);
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-b', 30)$$);
COMMIT;
RESET ROLE;
-- only a superuser may move the jobs' clock
SELECT pg_temp.try($$SELECT custos.job_clock(now())$$);
SET ROLE regress_ret_user;
SELECT pg_temp.try($$SELECT custos.job_clock(now() + interval '1 day')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION custos.job_clock(timestamptz) TO regress_ret_user;
SET ROLE regress_ret_user;
SELECT pg_temp.try($$SELECT custos.job_clock(now() + interval '1 day')$$);
SELECT pg_temp.try($$SELECT custos.job_clock(NULL)$$);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION custos.job_clock(timestamptz) FROM regress_ret_user;
-- the batch primitive takes NULL only for its held keys
SELECT pg_temp.try($$SELECT custos.retention_batch(NULL, now(), 10, 0, NULL, 1)$$) AS null_tenant;
SELECT pg_temp.try($$SELECT custos.retention_batch('ret-a', now(), 10, NULL, NULL, 1)$$) AS null_after_id;

-- ---------------------------------------------------------------------------
-- events: a client-supplied occurred_at long ago does not make an event
-- expire early (periods count from recorded_at)
-- ---------------------------------------------------------------------------
SELECT count(*) AS logged FROM custos.log_batch($$[
	{"tenant": "ret-a", "action": "LOGIN", "actor": "alice@example.com", "actor_name": "Alice Example", "source_ip": "198.51.100.7", "occurred_at": "2001-01-01T00:00:00Z"},
	{"tenant": "ret-a", "action": "VIEW", "actor": "alice@example.com", "subject": "cam-1", "description": "looked at camera 1"},
	{"tenant": "ret-a", "action": "VIEW", "actor": "bob@example.com", "subject": "cam-1", "description": "Bob looked too"},
	{"tenant": "ret-b", "action": "LOGIN", "actor": "carol@example.com", "actor_name": "Carol"},
	{"tenant": "ret-b", "action": "UPDATE", "actor": "dave@example.com", "subject": "erin@example.com", "new_state": {"desk": 12}},
	{"tenant": "ret-b", "action": "VIEW", "actor": "erin@example.com", "subject": "room-4"},
	{"tenant": "ret-b", "action": "VIEW", "actor": "dave@example.com", "subject": "frank@example.com"},
	{"tenant": "ret-c", "action": "LOGIN", "actor": "gina@example.com"},
	{"tenant": "ret-c", "action": "VIEW", "actor": "hal@example.com", "subject": "gina@example.com"},
	{"tenant": "ret-c", "action": "LOGIN", "actor": "hal@example.com"}
]$$);
SELECT custos.seal() > 0 AS sealed;
SELECT * FROM pg_temp.verify_all();

-- the job status before any run
SELECT tenant, job, last_outcome, backlog FROM custos.job_status WHERE tenant LIKE 'ret-%' ORDER BY 1, 2;

-- ---------------------------------------------------------------------------
-- anonymisation, 8 days on: ret-a's personal fields become unrecoverable,
-- actors keep a stable keyed pseudonym; ret-b and ret-c (held below) keep theirs
-- ---------------------------------------------------------------------------
SELECT k.key AS alice_key FROM custos.data_key k
 WHERE k.tenant = 'ret-a' AND k.scope = 'actor' AND k.scope_ref = custos.scope_ref('ret-a', 'actor', 'alice@example.com') \gset
SELECT pg_temp.on_disk('custos.data_key', :'alice_key') AS key_on_disk_before;
-- personal values never reach the table in clear
SELECT pg_temp.on_disk('custos.event_log', convert_to('alice@example.com', 'UTF8')) AS actor_in_clear,
	   pg_temp.on_disk('custos.event_log', convert_to('Alice Example', 'UTF8')) AS name_in_clear;
SELECT custos.place_legal_hold('ret-c', NULL, 'case 2026-17: preserve everything') AS tenant_hold \gset
SELECT pg_temp.try($$SELECT custos.place_legal_hold('ret-c', NULL, '  ')$$);
SELECT pg_temp.try($$SELECT custos.place_legal_hold('ret-c', '', 'why')$$);

SELECT now() + interval '8 days' AS day8 \gset
CALL custos.anonymize(as_of => :'day8');
SELECT tenant, action, regexp_replace(actor, '^anon-[0-9a-f]{12}$', 'anon-<12 hex>') AS actor,
	   actor_name, source_ip, subject, description, personal_data
  FROM custos.events WHERE tenant LIKE 'ret-%' AND category IS NULL ORDER BY id;
-- the pseudonym is stable per actor (Alice's two events share one, Bob has
-- another) and keyed: not derivable by hashing a guessed address
SELECT count(*) AS events, count(DISTINCT actor) AS pseudonyms,
	   count(*) FILTER (WHERE actor IN ('anon-' || left(encode(sha256(convert_to('alice@example.com', 'UTF8')), 'hex'), 12),
										'anon-' || left(encode(sha256(convert_to('bob@example.com', 'UTF8')), 'hex'), 12))) AS plain_hashes
  FROM custos.events WHERE tenant = 'ret-a' AND category IS NULL;
SELECT (array_agg(actor ORDER BY id))[1] = (array_agg(actor ORDER BY id))[2] AS alice_stable
  FROM custos.events WHERE tenant = 'ret-a' AND category IS NULL;
-- the key is gone from the table and from its pages, the old row version included
SELECT count(*) AS alice_live_keys FROM custos.data_key
 WHERE tenant = 'ret-a' AND key IS NOT NULL AND scope_ref = custos.scope_ref('ret-a', 'actor', 'alice@example.com');
SELECT pg_temp.on_disk('custos.data_key', :'alice_key') AS key_on_disk_after;
SELECT * FROM pg_temp.verify_all();
SELECT tenant, job, last_outcome, events_deleted, keys_destroyed, backlog
  FROM custos.job_status WHERE tenant LIKE 'ret-%' AND job = 'anonymization' ORDER BY 1;
-- the run is a system event of the tenant, with what it did
SELECT tenant, actor, actor_type, category, action, resource_type,
	   new_state - '{as_of,cutoff,duration_ms,run_id}'::text[] AS new_state,
	   (new_state->>'duration_ms')::numeric >= 0 AS has_duration
  FROM custos.events WHERE resource_type = 'JOB' ORDER BY id;
-- rerunning finds nothing of the first events left to do; the one key it
-- destroys is that of the first run's own system event, recorded now, which
-- the clock 8 days ahead makes old enough
CALL custos.anonymize(as_of => :'day8');
SELECT tenant, keys_destroyed FROM custos.job_run WHERE job = 'anonymization' AND tenant LIKE 'ret-%' ORDER BY run_id;

-- ---------------------------------------------------------------------------
-- erasure (Art. 17): one subject of ret-b, by and about; others intact
-- ---------------------------------------------------------------------------
SELECT custos.erase_subject('ret-b', 'erin@example.com', 'ticket 4711') - 'subject_ref' - 'first_day' - 'last_day' AS erased;
SELECT tenant, action, regexp_replace(actor, '^anon-[0-9a-f]{12}$', 'anon-<12 hex>') AS actor,
	   actor_name, subject, new_state, personal_data
  FROM custos.events WHERE tenant = 'ret-b' AND category IS NULL ORDER BY id;
-- the erasure is recorded, without the erased data
SELECT tenant, category, action, resource_type, resource_id, subject,
	   new_state - 'subject_ref' - 'first_day' - 'last_day' AS new_state,
	   length(new_state->>'subject_ref') AS ref_hex_chars,
	   position('erin' IN new_state::text) AS names_erin
  FROM custos.events WHERE action = 'ERASE';
SELECT pg_temp.try($$SELECT custos.erase_subject('ret-b', '')$$);
SELECT pg_temp.try($$SELECT custos.erase_subject('nobody', 'x')$$);
SELECT * FROM pg_temp.verify_all();

-- ---------------------------------------------------------------------------
-- legal holds: a held tenant is neither anonymised nor deleted nor erased
-- ---------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT custos.erase_subject('ret-c', 'gina@example.com')$$);
SELECT now() + interval '40 days' AS day40 \gset
CALL custos.run_jobs(as_of => :'day40');
SELECT tenant, job, last_outcome FROM custos.job_status WHERE tenant = 'ret-c' ORDER BY 2;
SELECT count(*) AS ret_c_events, count(*) FILTER (WHERE personal_data = 'clear') AS clear
  FROM custos.events WHERE tenant = 'ret-c' AND category IS NULL;
-- ret-a: everything past 30 days is gone, the chain starts at its checkpoint
SELECT count(*) AS ret_a_events_left FROM custos.event_log WHERE tenant = 'ret-a';
SELECT tenant, block_no >= 0 AS has_block, next_seq FROM custos.checkpoint WHERE tenant LIKE 'ret-%' ORDER BY 1;
SELECT * FROM pg_temp.verify_all();
-- the retention run's own events are new, so they stay
SELECT tenant, action, new_state->'events_deleted' AS deleted, new_state->'keys_destroyed' AS keys,
	   new_state->'blocks_dropped' AS blocks, new_state->'outcome' AS outcome
  FROM custos.events WHERE resource_type = 'JOB' AND action = 'PURGE' AND tenant LIKE 'ret-%' ORDER BY tenant, id;

-- a held subject within a tenant: swap the tenant hold for a subject hold
SELECT custos.place_legal_hold('ret-c', 'gina@example.com', 'case 2026-17 narrowed to Gina') AS subject_hold \gset
SELECT custos.lift_legal_hold(:tenant_hold, 'scope narrowed');
SELECT pg_temp.try(format('SELECT custos.lift_legal_hold(%s)', :tenant_hold));
SELECT pg_temp.try($$SELECT custos.lift_legal_hold(-1)$$);
SELECT hold_id = :subject_hold AS subject_hold, tenant, scope, reason, lifted_at IS NOT NULL AS lifted
  FROM custos.legal_holds WHERE tenant = 'ret-c' ORDER BY hold_id;
-- the views filter before a function of the caller's sees a row: a cheap
-- leaky function in the caller's WHERE must not see another tenant's hold
-- reason or policy (the views are security barriers)
CREATE FUNCTION pg_temp.peek(t text, what text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	IF t = 'ret-c' THEN
		RAISE NOTICE 'peek saw %: %', t, what;
	END IF;
	RETURN true;
END
$$;
SET ROLE regress_ret_user;
BEGIN;
SELECT custos.authenticate(:'owner_token') IS NOT NULL AS ret_a_owner_signed_in;
SELECT count(*) AS other_holds_seen FROM custos.legal_holds WHERE pg_temp.peek(tenant, reason) AND tenant = 'ret-c';
SELECT count(*) AS other_policies_seen FROM custos.retention_policies
 WHERE pg_temp.peek(tenant, retention_days::text) AND tenant = 'ret-c';
COMMIT;
RESET ROLE;
SELECT pg_temp.try($$SELECT custos.erase_subject('ret-c', 'gina@example.com')$$);
SELECT custos.seal() >= 0 AS sealed;
CALL custos.run_jobs(as_of => :'day40');
-- Gina's events (by her, about her) stay readable; Hal's login is gone
SELECT action, actor, subject, personal_data FROM custos.events
 WHERE tenant = 'ret-c' AND category IS NULL ORDER BY id;
SELECT tenant, job, last_outcome, events_deleted FROM custos.job_status WHERE tenant = 'ret-c' ORDER BY 2;
SELECT count(*) AS ret_c_first_events_left FROM custos.event_log WHERE tenant = 'ret-c' AND category IS NULL;
-- Hal cannot be erased where held Gina's record needs him
SELECT custos.erase_subject('ret-c', 'hal@example.com') - 'subject_ref' - 'first_day' - 'last_day' AS erased_hal;
SELECT * FROM pg_temp.verify_all();
-- hold events are audit events; the hold names its subject only in the
-- event's encrypted personal fields
SELECT tenant, action, resource_type, subject, new_state - 'hold_id' AS new_state
  FROM custos.events WHERE resource_type = 'LEGAL_HOLD' ORDER BY id;

-- lifted: the next run cuts the rest, and erasure works again
SELECT custos.lift_legal_hold(:subject_hold, 'case closed');
SELECT (custos.erase_subject('ret-c', 'gina@example.com')->>'keys_destroyed')::int > 0 AS erased_gina;
CALL custos.run_jobs(as_of => :'day40');
SELECT count(*) AS ret_c_first_events_left FROM custos.event_log WHERE tenant = 'ret-c' AND category IS NULL;
SELECT * FROM pg_temp.verify_all();

-- ---------------------------------------------------------------------------
-- tampering after a cut is still caught: a kept event deleted by hand
-- ---------------------------------------------------------------------------
SELECT custos.seal() >= 0 AS sealed;
SELECT min(id) AS victim FROM custos.event_log WHERE tenant = 'ret-a' AND id < (SELECT watermark FROM custos.sealer_state) \gset
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM custos.event_log WHERE id = :victim;
SELECT tenant, ok, failure, failed_event_id = :victim AS the_victim FROM custos.verify('ret-a');
ROLLBACK;

-- ---------------------------------------------------------------------------
-- the DBA's pause between batches (custos.job_batch_pause) slows a run down
-- ---------------------------------------------------------------------------
SELECT custos.seal() >= 0 AS sealed;
SELECT count(*) > 1 AS several_batches_to_go FROM custos.event_log
 WHERE tenant = 'ret-a' AND id < (SELECT watermark FROM custos.sealer_state);
SET custos.job_batch_pause = '200ms';
SELECT clock_timestamp() AS before_paused \gset
CALL custos.apply_retention(tenant => 'ret-a', as_of => now() + interval '400 days', batch_size => 1);
SELECT clock_timestamp() - :'before_paused'::timestamptz >= interval '200ms' AS paused;
RESET custos.job_batch_pause;
SELECT * FROM pg_temp.verify_all();

-- ---------------------------------------------------------------------------
-- privacy mode: the owners above a tenant decide about its data only until
-- it switches privacy mode on; then its own owners and admins alone do
-- ---------------------------------------------------------------------------
SELECT custos.create_tenant('ret-kid', 'ret-a', 'a customer of ret-a');
SET ROLE regress_ret_user;
BEGIN;
SELECT custos.authenticate(:'owner_token') IS NOT NULL AS ret_a_owner_signed_in;
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-kid', 60)$$);
COMMIT;
RESET ROLE;
SELECT custos.set_privacy_mode('ret-kid', true);
SET ROLE regress_ret_user;
BEGIN;
SELECT custos.authenticate(:'owner_token') IS NOT NULL AS ret_a_owner_signed_in;
SELECT pg_temp.try($$SELECT custos.set_retention_policy('ret-kid', 90)$$);
SELECT pg_temp.try($$SELECT custos.erase_subject('ret-kid', 'kim@example.com')$$);
SELECT pg_temp.try($$SELECT custos.place_legal_hold('ret-kid', NULL, 'case 9')$$);
-- its own tenant stays its to decide about
SELECT pg_temp.try($$SELECT custos.erase_subject('ret-a', 'nobody@example.com')$$);
COMMIT;
RESET ROLE;
SELECT tenant, retention_days FROM custos.retention_policies WHERE tenant = 'ret-kid';

-- ---------------------------------------------------------------------------
-- pg_cron: a notice without it, a nightly job with it
-- ---------------------------------------------------------------------------
SELECT custos.schedule_jobs();
CREATE EXTENSION pg_cron;
SELECT custos.schedule_jobs() > 0 AS scheduled;
SELECT custos.schedule_jobs('5 2 * * *') > 0 AS rescheduled;
SELECT jobname, schedule, command, database = current_database() AS here FROM cron.job;
SELECT pg_temp.try($$SELECT custos.schedule_jobs('not a schedule')$$);
SELECT custos.unschedule_jobs();
SELECT count(*) AS cron_jobs FROM cron.job;
DROP EXTENSION pg_cron;
