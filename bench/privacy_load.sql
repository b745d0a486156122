-- bench/privacy_load.sql: 1000 events in one custos.log_batch() call, for
-- the query benchmark's log: 20 customer tenants, occurred_at spread over
-- the last 90 days (given explicitly, as epoch seconds), 5 actions, 10
-- actors per tenant, a few personal fields.
SELECT count(*) FROM custos.log_batch((
  SELECT jsonb_agg(jsonb_build_object(
    'tenant', 'cust-' || lpad((1 + t)::text, 2, '0'),
    'occurred_at', round(extract(epoch FROM now()) - random() * 7776000),
    'category', 'scheme',
    'action', (ARRAY['LOGIN', 'UPDATE', 'CREATE', 'DELETE', 'EXPORT'])[1 + floor(random() * 5)::int],
    'actor', 'user-' || u || '@cust-' || (1 + t) || '.example.com',
    'source_ip', '10.' || (1 + t) || '.' || (g % 256) || '.' || (1 + u),
    'resource_type', 'SCHEME',
    'resource_id', 'scheme-' || r,
    'description', 'Changed the alarm threshold of scheme ' || r))
  FROM (SELECT g, floor(random() * 20)::int AS t, floor(random() * 10)::int AS u,
               1 + floor(random() * 99999)::int AS r
          FROM generate_series(1, 1000) g) s));
