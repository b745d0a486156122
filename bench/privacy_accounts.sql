-- bench/privacy_accounts.sql: the same read of the protected table: run
-- (iii), every query a READ event recorded by custos.
\set aid random(1, :naid)
SELECT abalance FROM bench_accounts WHERE aid = :aid;
