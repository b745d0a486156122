-- prepared: PREPARE TRANSACTION empties the session's data-key cache.  A
-- transaction that meets a new actor and subject creates their day keys; if
-- it is prepared and then rolled back, those key rows are gone, and the
-- session's next events for the same actor and subject must create (or find)
-- live keys, not reuse the cached ids of rows that no longer exist.  After
-- COMMIT PREPARED the keys exist and are found again.
\set VERBOSITY terse
SELECT custos.seal() >= 0 AS flushed;

-- a data key row exists for the event's actor key, and for its subject key
-- if it has one
CREATE FUNCTION pg_temp.keys_exist(event_id bigint) RETURNS boolean LANGUAGE sql AS $$
SELECT EXISTS (SELECT 1 FROM custos.data_key k WHERE k.key_id = l.actor_key_id AND k.key IS NOT NULL)
   AND (l.subject_key_id IS NULL OR
        EXISTS (SELECT 1 FROM custos.data_key k WHERE k.key_id = l.subject_key_id AND k.key IS NOT NULL))
  FROM custos.event_log l WHERE l.id = event_id
$$;

-- ROLLBACK PREPARED: the keys created by the prepared transaction are gone
BEGIN;
SELECT custos.log('{"tenant": "prepared", "action": "FIRST", "actor": "p-rollback",
                    "actor_name": "Rolf Rollback", "subject": "s-rollback"}') AS id_rolled_back \gset
SELECT count(*) AS new_keys FROM custos.data_key WHERE tenant = 'prepared';
PREPARE TRANSACTION 'custos_regress_prepared_rb';
ROLLBACK PREPARED 'custos_regress_prepared_rb';
SELECT count(*) AS keys_after_rollback FROM custos.data_key WHERE tenant = 'prepared';
SELECT count(*) AS rolled_back_event FROM custos.event_log WHERE id = :id_rolled_back;

-- the same session, the same actor and subject: fresh keys, readable fields
SELECT custos.log('{"tenant": "prepared", "action": "SECOND", "actor": "p-rollback",
                    "actor_name": "Rolf Rollback", "subject": "s-rollback"}') AS id_after_rollback \gset
SELECT custos.log('{"tenant": "prepared", "action": "THIRD", "actor": "p-rollback",
                    "actor_name": "Rolf Rollback"}') AS id_after_rollback_2 \gset
SELECT action, actor, actor_name, subject, personal_data,
       pg_temp.keys_exist(id) AS keys_exist
  FROM custos.events WHERE id IN (:id_after_rollback, :id_after_rollback_2) ORDER BY id;
SELECT count(*) AS live_keys FROM custos.data_key WHERE tenant = 'prepared';

-- COMMIT PREPARED: the keys survive, and the session finds them again
BEGIN;
SELECT custos.log('{"tenant": "prepared", "action": "FIRST", "actor": "p-commit",
                    "actor_name": "Cora Commit", "subject": "s-commit"}') AS id_committed \gset
PREPARE TRANSACTION 'custos_regress_prepared_c';
COMMIT PREPARED 'custos_regress_prepared_c';
SELECT custos.log('{"tenant": "prepared", "action": "SECOND", "actor": "p-commit",
                    "actor_name": "Cora Commit", "subject": "s-commit"}') AS id_after_commit \gset
SELECT action, actor, actor_name, subject, personal_data,
       pg_temp.keys_exist(id) AS keys_exist
  FROM custos.events WHERE id IN (:id_committed, :id_after_commit) ORDER BY id;
-- one actor key and one subject key for both events: found, not created anew
SELECT count(DISTINCT actor_key_id) AS actor_keys, count(DISTINCT subject_key_id) AS subject_keys
  FROM custos.event_log WHERE id IN (:id_committed, :id_after_commit);

-- a prepared transaction that appended for a known actor, rolled back: the
-- cached key it used stays valid (the key row was committed earlier)
BEGIN;
SELECT custos.log('{"tenant": "prepared", "action": "FOURTH", "actor": "p-commit"}') IS NOT NULL AS logged;
PREPARE TRANSACTION 'custos_regress_prepared_rb2';
ROLLBACK PREPARED 'custos_regress_prepared_rb2';
SELECT custos.log('{"tenant": "prepared", "action": "FIFTH", "actor": "p-commit",
                    "actor_name": "Cora Commit"}') AS id_known_actor \gset
SELECT action, actor, actor_name, personal_data, pg_temp.keys_exist(id) AS keys_exist
  FROM custos.events WHERE id = :id_known_actor;

-- nothing is left prepared, and the tenant's chain seals and verifies
SELECT count(*) AS prepared_left FROM pg_prepared_xacts WHERE gid LIKE 'custos_regress_prepared%';
SELECT custos.seal() AS sealed;
SELECT tenant, ok, events_checked, pending, size, failure FROM custos.verify('prepared');
SELECT action, actor, personal_data, seq FROM custos.events WHERE tenant = 'prepared' ORDER BY seq;
