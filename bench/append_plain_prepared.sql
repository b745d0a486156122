-- bench/append_plain_prepared.sql: append_plain.sql for pgbench -M prepared.
\set t random(1, :ntenants)
\set u random(1, :nactors)
\set r random(1, 1000000)
\set a random(0, 255)
\set b random(1, 254)
INSERT INTO bench_plain (tenant, category, action, actor, actor_name, source_ip, user_agent, resource_type, resource_id, description, new_state) VALUES ('tenant-' || :t, 'scheme', 'UPDATE', 'user-' || :u || '@example.com', 'User ' || :u, ('10.' || :t || '.' || :a || '.' || :b)::inet, 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36', 'SCHEME', 'scheme-' || :r, 'Changed the alarm threshold of scheme ' || :r, ('{"name": "Scheme ' || :r || '", "enabled": true, "threshold": ' || :r || ', "zones": ["north", "gate"]}')::jsonb) RETURNING id;
