-- bench/privacy_accounts_open.sql: select-only read of an account of t1
-- (aids 1 .. :naid), unprotected table: runs (i) unaudited and (ii) pgaudit.
\set aid random(1, :naid)
SELECT abalance FROM bench_accounts_open WHERE aid = :aid;
