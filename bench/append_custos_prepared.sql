-- bench/append_custos_prepared.sql: append_custos.sql for pgbench -M prepared:
-- the variables are bound parameters, the JSON text is assembled around them.
\set t random(1, :ntenants)
\set u random(1, :nactors)
\set r random(1, 1000000)
\set a random(0, 255)
\set b random(1, 254)
SELECT custos.log(('{"tenant": "tenant-' || :t || '", "category": "scheme", "action": "UPDATE", "actor": "user-' || :u || '@example.com", "actor_name": "User ' || :u || '", "source_ip": "10.' || :t || '.' || :a || '.' || :b || '", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36", "resource_type": "SCHEME", "resource_id": "scheme-' || :r || '", "description": "Changed the alarm threshold of scheme ' || :r || '", "new_state": {"name": "Scheme ' || :r || '", "enabled": true, "threshold": ' || :r || ', "zones": ["north", "gate"]}}')::jsonb);
