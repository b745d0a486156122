-- tools/demo.sql: the demo data `make run` loads.  Events shaped like the
-- seeds: a scheme deployment, a camera setting change, a trigger association
-- (seed 002) and desk-booking events (seed 003).
\set ON_ERROR_STOP on
SELECT count(*) AS demo_events FROM custos.log_batch($$[
 {"tenant":"demo-acme","category":"scheme","action":"CREATE","resource_type":"SCHEME","resource_name":"SchemeA",
  "actor":"u-1001","actor_type":"user","actor_name":"Alice Admin","source_ip":"198.51.100.7",
  "target_level":"TENANT","target_name":"TenantA","metadata":{"tenantName":"TenantA","schemeName":"SchemeA"}},
 {"tenant":"demo-acme","category":"scheme","action":"DEPLOY","resource_type":"SCHEME","resource_name":"SchemeA",
  "actor":"key-77","actor_type":"api_key","target_level":"GROUP","target_name":"Group1",
  "metadata":{"tenantName":"TenantA","targetLevel":"GROUP","targetLevelName":"Group1","schemeName":"SchemeA"}},
 {"tenant":"demo-acme","category":"scheme","action":"UPDATE","resource_type":"CAMERA_SETTINGS","resource_name":"brightness",
  "actor":"u-1001","actor_name":"Alice Admin","previous_state":{"value":"60"},"new_state":{"value":"75"},
  "metadata":{"tenantName":"TenantA","schemeName":"SchemeA","cameraSettingKey":"brightness"}},
 {"tenant":"demo-acme","category":"scheme","action":"ADD","resource_type":"TRIGGER","resource_name":"SchemeA",
  "actor":"u-1001","actor_name":"Alice Admin",
  "metadata":{"tenantName":"TenantA","schemeName":"SchemeA","triggerName":"TriggerX","triggerCategoryName":"Tailgating"}},
 {"tenant":"demo-desk","category":"booking","action":"CREATE","resource_type":"BOOKING","resource_id":45887,
  "actor":"u-7","actor_name":"Flexo Support","subject":"u-7","description":"A booking has been created for \"Table 23\"."},
 {"tenant":"demo-desk","category":"booking","action":"EXPORT","resource_type":"BOOKING",
  "actor":"u-7","actor_name":"Flexo Support","description":"Bookings have been exported."}
]$$::jsonb);
SELECT custos.seal() AS sealed_now;
