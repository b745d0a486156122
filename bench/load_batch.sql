-- bench/load_batch.sql: 1000 events in one custos.log_batch() call, spread
-- over 8 tenants and 50 actors per tenant; loads the sealer and verify
-- benchmarks' backlog.
SELECT count(*) FROM custos.log_batch((
  SELECT jsonb_agg(jsonb_build_object(
    'tenant', 'tenant-' || (1 + g % 8),
    'category', 'scheme',
    'action', 'UPDATE',
    'actor', 'user-' || u || '@example.com',
    'actor_name', 'User ' || u,
    'source_ip', '10.' || (1 + g % 8) || '.' || (g % 256) || '.' || (1 + u),
    'user_agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
    'resource_type', 'SCHEME',
    'resource_id', 'scheme-' || r,
    'description', 'Changed the alarm threshold of scheme ' || r,
    'new_state', jsonb_build_object('name', 'Scheme ' || r, 'enabled', true,
                                    'threshold', r, 'zones', jsonb_build_array('north', 'gate'))))
  FROM (SELECT g, 1 + (random() * 49)::int AS u, 1 + (random() * 999999)::int AS r
          FROM generate_series(1, 1000) g) s));
