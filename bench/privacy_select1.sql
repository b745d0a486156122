-- bench/privacy_select1.sql: the authenticate benchmark's baseline.
SELECT 1;
