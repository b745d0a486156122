-- worker: with custos.sealer on, the background sealer seals appended
-- events without anyone calling custos.seal(), and custos.status() shows
-- its pid.  Runs last: the sealer would make other tests' output timing-
-- dependent.
\set VERBOSITY terse
SELECT custos.seal() >= 0 AS flushed;

ALTER SYSTEM SET custos.sealer = on;
SELECT pg_reload_conf();

CREATE TEMP TABLE w AS
SELECT custos.log('{"tenant": "worker", "action": "BACKGROUND"}') AS id, clock_timestamp() AS appended_at;

-- wait for it, at most 10 seconds
DO $$
DECLARE
	i int := 0;
BEGIN
	WHILE NOT (SELECT sealed FROM custos.events WHERE id = (SELECT id FROM w)) AND i < 200 LOOP
		PERFORM pg_sleep(0.05);
		i := i + 1;
	END LOOP;
END
$$;

SELECT e.sealed, e.seq, e.block_no FROM custos.events e JOIN w USING (id);
SELECT s.sealer_pid IS NOT NULL AS sealer_running,
       s.sealer_pid IN (SELECT pid FROM pg_stat_activity WHERE backend_type = 'custos sealer') AS pid_is_the_sealer,
       s.last_seal_at >= w.appended_at AS sealed_after_append,
       s.pending
  FROM custos.status() s, w;
SELECT tenant, ok, events_checked, pending, size FROM custos.verify('worker');

ALTER SYSTEM RESET custos.sealer;
SELECT pg_reload_conf();
