-- bench/privacy_query_events.sql: the filtered query of the issue, through
-- the view: 100 events of one tenant, one action, a 30-day window ending a
-- random 0..59 days ago, newest first.
\set d random(0, 59)
SELECT * FROM custos.events
 WHERE tenant = 'cust-07' AND action = 'UPDATE'
   AND occurred_at >= now() - make_interval(days => :d + 30)
   AND occurred_at < now() - make_interval(days => :d)
 ORDER BY occurred_at DESC LIMIT 100;
