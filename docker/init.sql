-- docker/init.sql: run once by the postgres image when it initialises a new
-- data directory, in POSTGRES_DB (default "postgres"), which must be the
-- database named by custos.database and cron.database_name in
-- docker-compose.yml.
CREATE EXTENSION IF NOT EXISTS custos CASCADE;
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT preloaded, sealer_pid IS NOT NULL AS sealer_running FROM custos.status();
