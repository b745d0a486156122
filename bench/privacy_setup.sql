-- bench/privacy_setup.sql: objects of the privacy benchmarks (run once by
-- privacy.sh as superuser, with -v accounts=N).
--
-- Tenants: "reseller" with 20 customers cust-01 .. cust-20 (the 10M-event
-- log of the query benchmark), and t1 .. t4 (the accounts table of the read
-- auditing benchmark).  Every login role below is an ordinary role that owns
-- nothing, as docs/privacy.md asks of application roles.

SET client_min_messages = warning;
CREATE EXTENSION custos CASCADE;
CREATE EXTENSION pgaudit;

CREATE ROLE bench_gateway LOGIN;	-- authenticate: a gateway role, no principal
CREATE ROLE bench_council LOGIN;	-- mapped to a works-council member with audit.read on the reseller
CREATE ROLE bench_plain LOGIN;		-- (i) unaudited reads
CREATE ROLE bench_pgaudit LOGIN;	-- (ii) reads logged by pgaudit
CREATE ROLE bench_reader LOGIN;		-- (iii) mapped to an app principal of t1: reads recorded by custos
CREATE ROLE bench_rls LOGIN;		-- (iv) reads under a plain RLS policy of the same shape, no custos
ALTER ROLE bench_pgaudit SET pgaudit.log = 'read';

SELECT custos.create_tenant('reseller', NULL, 'Reseller');
SELECT custos.create_tenant('cust-' || lpad(i::text, 2, '0'), 'reseller', 'Customer ' || i)
  FROM generate_series(1, 20) i;
SELECT custos.create_tenant('t' || i, NULL, 'Shop ' || i) FROM generate_series(1, 4) i;

-- the works council of the reseller reads every customer's log
SELECT custos.grant_right('reseller',
                          custos.create_principal('reseller', 'works council', 'user', 'member',
                                                  db_role => 'bench_council'),
                          'audit.read');
-- a user whose personal token the authenticate benchmark presents
SELECT custos.create_principal('cust-01', 'alice', 'user', 'member');
-- the shop's application, reading its own tenant's accounts
SELECT custos.create_principal('t1', 'shop app', 'app', 'member', db_role => 'bench_reader');

-- The read auditing workload: pgbench_accounts with a tenant column, rows
-- spread evenly over t1 .. t4 in aid order.  bench_accounts is protected,
-- bench_accounts_open is the same data for the unaudited and pgaudit runs,
-- bench_accounts_rls the same under a plain RLS policy.
CREATE TABLE bench_accounts (
	aid			int		PRIMARY KEY,
	tenant		text	NOT NULL,
	abalance	int		NOT NULL,
	filler		text
);
INSERT INTO bench_accounts
SELECT g, 't' || (1 + (g - 1) * 4 / :accounts), 0, repeat('x', 84)
  FROM generate_series(1, :accounts) g;
CREATE TABLE bench_accounts_open (LIKE bench_accounts INCLUDING ALL);
INSERT INTO bench_accounts_open SELECT * FROM bench_accounts;
CREATE TABLE bench_accounts_rls (LIKE bench_accounts INCLUDING ALL);
INSERT INTO bench_accounts_rls SELECT * FROM bench_accounts;
SELECT custos.protect('bench_accounts', 'tenant', 'bench accounts');
-- For reference, what row-level security alone costs: a policy shaped like
-- custos' (an initplan array, tenant = ANY), without custos' functions, the
-- read marker and the queue.
ALTER TABLE bench_accounts_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY bench_read ON bench_accounts_rls FOR SELECT TO PUBLIC
	USING (tenant = ANY ((SELECT ARRAY['t1'])::text[]));
GRANT SELECT ON bench_accounts TO bench_reader;
GRANT SELECT ON bench_accounts_open TO bench_plain, bench_pgaudit;
GRANT SELECT ON bench_accounts_rls TO bench_rls;
VACUUM ANALYZE bench_accounts;
VACUUM ANALYZE bench_accounts_open;
VACUUM ANALYZE bench_accounts_rls;
