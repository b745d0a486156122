-- bench/privacy_accounts_rls.sql: the same read under a plain RLS policy of
-- the same shape, without custos: run (iv), for reference.
\set aid random(1, :naid)
SELECT abalance FROM bench_accounts_rls WHERE aid = :aid;
