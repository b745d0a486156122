-- bench/privacy_query_log.sql: the same query straight on the table
-- custos.event_log (no decryption, no view joins).
\set d random(0, 59)
SELECT * FROM custos.event_log
 WHERE tenant = 'cust-07' AND action = 'UPDATE'
   AND occurred_at >= now() - make_interval(days => :d + 30)
   AND occurred_at < now() - make_interval(days => :d)
 ORDER BY occurred_at DESC LIMIT 100;
