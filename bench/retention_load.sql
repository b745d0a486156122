-- bench/retention_load.sql: 1000 events in one custos.log_batch() call for
-- bench/retention.sh, over :ntenants tenants, :nactors actors and (a third
-- of the events) :nsubjects data subjects per tenant, so that the
-- anonymisation has a realistic number of day keys to destroy.
SELECT count(*) FROM custos.log_batch((
  SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
    'tenant', 'tenant-' || t,
    'category', 'scheme',
    'action', 'UPDATE',
    'actor', 'user-' || u || '@example.com',
    'actor_name', 'User ' || u,
    'source_ip', '10.' || t || '.' || (g % 256) || '.' || (1 + u % 254),
    'subject', CASE WHEN g % 3 = 0 THEN 'person-' || s || '@example.com' END,
    'resource_type', 'SCHEME',
    'resource_id', 'scheme-' || r,
    'description', 'Changed the alarm threshold of scheme ' || r,
    'new_state', jsonb_build_object('name', 'Scheme ' || r, 'enabled', true, 'threshold', r))))
  FROM (SELECT g, 1 + (random() * (:ntenants - 1))::int AS t,
               1 + (random() * (:nactors - 1))::int AS u,
               1 + (random() * (:nsubjects - 1))::int AS s,
               1 + (random() * 999999)::int AS r
          FROM generate_series(1, 1000) g) x));
