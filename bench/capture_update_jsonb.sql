\set id random(1, 100000)
UPDATE bench_cap_jsonb SET value = value + 1, updated_at = now() WHERE id = :id;
