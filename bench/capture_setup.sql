-- bench/capture_setup.sql: objects of the capture benchmark (bench/capture.sh).
-- Four tables of identical shape and content, 100k rows over 8 tenants:
--   bench_cap_plain   untracked: the baseline
--   bench_cap_custos  custos.track(): C trigger, changed columns, chained
--   bench_cap_jsonb   the generic jsonb audit trigger (supa_audit pattern)
--   bench_cap_pgaudit untracked; its writer role runs with pgaudit.log = 'write'
-- and two for the single 100k-row UPDATE: bench_bulk_plain, bench_bulk_custos.
\set ON_ERROR_STOP on
CREATE EXTENSION custos CASCADE;
CREATE EXTENSION pgaudit;

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['bench_cap_plain', 'bench_cap_custos', 'bench_cap_jsonb', 'bench_cap_pgaudit',
							 'bench_bulk_plain', 'bench_bulk_custos']
	LOOP
		EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, tenant text NOT NULL, name text NOT NULL, '
					   'value int NOT NULL, updated_at timestamptz NOT NULL, payload text NOT NULL)', t);
		EXECUTE format('INSERT INTO %I SELECT g, ''bench-t'' || (g %% 8), ''item '' || g, 0, '
					   '''2026-01-01'', repeat(md5(g::text), 3) FROM generate_series(1, 100000) g', t);
		EXECUTE format('ALTER TABLE %I SET (fillfactor = 90)', t);
	END LOOP;
END
$$;
VACUUM (FREEZE, ANALYZE);
-- the tenants exist (not required by capture, but a real system has them)
SELECT custos.create_tenant('bench-t' || g, NULL, 'Bench tenant ' || g) FROM generate_series(0, 7) g;
SELECT custos.track('bench_cap_custos', 'OBJECT', 'tenant', resource_name_column => 'name');
SELECT custos.track('bench_bulk_custos', 'OBJECT', 'tenant', resource_name_column => 'name');

-- The generic audit trigger, as in supabase/supa_audit and the classic
-- audit-trigger: whole rows as jsonb into one table.
CREATE TABLE bench_audit_record (
	id			bigserial PRIMARY KEY,
	record_id	text,
	op			text NOT NULL,
	ts			timestamptz NOT NULL DEFAULT now(),
	table_oid	oid NOT NULL,
	table_name	name NOT NULL,
	record		jsonb,
	old_record	jsonb
);
CREATE INDEX ON bench_audit_record (ts);
CREATE INDEX ON bench_audit_record (table_oid);
CREATE FUNCTION bench_audit_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bench_audit_record (record_id, op, table_oid, table_name, record, old_record)
	VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END, TG_OP, TG_RELID, TG_TABLE_NAME,
			CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
			CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END);
	RETURN NULL;
END
$$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON bench_cap_jsonb
	FOR EACH ROW EXECUTE FUNCTION bench_audit_trigger();

-- pgaudit audits the writes of this role only, so the other workloads run
-- without it
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_pgaudit') THEN
		CREATE ROLE bench_pgaudit LOGIN;
	END IF;
END
$$;
GRANT SELECT, UPDATE ON bench_cap_pgaudit TO bench_pgaudit;
ALTER ROLE bench_pgaudit SET pgaudit.log = 'write';
