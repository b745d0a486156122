-- tools/demo.sql: the demo `make run` loads, shaped like the seeds.
--   demo-reseller        a reseller/installer (seed 000) managing two customers
--   ├─ demo-acme         video cloud customer, in privacy mode
--   └─ demo-desk         desk-booking customer (seed 003)
-- Principals: Rita (reseller admin), Alice (acme owner), Walter (acme works
-- council, audit.read), a camera app with an app token (seed 004).  Events:
-- scheme deployment, camera setting change and trigger association (seed
-- 002), bookings (seed 003).  The last query prints the demo tokens.
\set ON_ERROR_STOP on

-- The login to try the views with: superusers bypass row-level security,
-- exactly as in PostgreSQL, so the demo is read through an ordinary role.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'custos_demo') THEN
		CREATE ROLE custos_demo LOGIN;
	END IF;
END
$$;

SELECT custos.create_tenant('demo-reseller', NULL, 'Reseller & Installer GmbH');
SELECT custos.create_tenant('demo-acme', 'demo-reseller', 'ACME Video Cloud');
SELECT custos.create_tenant('demo-desk', 'demo-reseller', 'Desk Booking Co');

SELECT custos.create_principal('demo-reseller', 'Rita Reseller', 'user', 'admin') AS rita \gset
SELECT custos.create_principal('demo-acme', 'Alice Owner', 'user', 'owner') AS alice \gset
SELECT custos.create_principal('demo-acme', 'Walter Works-Council', 'user', 'member') AS walter \gset
SELECT custos.create_principal('demo-acme', 'Camera App', 'app', 'member') AS camapp \gset
SELECT custos.create_principal('demo-desk', 'Dana Desk Owner', 'user', 'owner') AS dana \gset

SELECT token AS rita_token FROM custos.issue_token(:'rita', 'personal', '30 days', 'demo') \gset
SELECT token AS alice_token FROM custos.issue_token(:'alice', 'personal', '30 days', 'demo') \gset
SELECT token AS dana_token FROM custos.issue_token(:'dana', 'personal', '30 days', 'demo') \gset

-- the application's own protected data: camera images per tenant
CREATE SCHEMA IF NOT EXISTS demo;
CREATE TABLE demo.images (id bigserial PRIMARY KEY, tenant text NOT NULL, camera text NOT NULL,
						  taken_at timestamptz NOT NULL DEFAULT now(), image_ref text NOT NULL);
GRANT USAGE ON SCHEMA demo TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON demo.images TO PUBLIC;
GRANT USAGE ON SEQUENCE demo.images_id_seq TO PUBLIC;
INSERT INTO demo.images (tenant, camera, image_ref) VALUES
	('demo-acme', 'entrance', 's3://acme/2026/11/entrance-0001.jpg'),
	('demo-acme', 'parking', 's3://acme/2026/11/parking-0042.jpg'),
	('demo-desk', 'lobby', 's3://desk/2026/11/lobby-0007.jpg');
SELECT custos.protect('demo.images', 'tenant', 'image data');

-- Alice, the owner, replaces the token she was given by one she issues
-- herself (whoever issued a token could act with it), gives the works
-- council the audit-log right and switches her account to privacy mode
-- (seed 000); tokens issued for her tenant from above stop working.
BEGIN;
SELECT custos.authenticate(:'alice_token') IS NOT NULL AS ok;
SELECT token AS alice_token FROM custos.issue_token(:'alice', 'personal', '30 days', 'demo, self-issued') \gset
COMMIT;
BEGIN;
SELECT custos.authenticate(:'alice_token') IS NOT NULL AS ok;
SELECT custos.grant_right('demo-acme', :'walter', 'audit.read');
SELECT custos.set_privacy_mode('demo-acme', true);
SELECT custos.log('{"tenant":"demo-acme","category":"login","action":"LOGIN","actor_name":"Alice Owner",
				   "source_ip":"198.51.100.7","user_agent":"Mozilla/5.0"}');
-- tokens for her works council member and her camera app come from her
SELECT token AS walter_token FROM custos.issue_token(:'walter', 'personal', '30 days', 'demo') \gset
SELECT token AS app_token FROM custos.issue_token(:'camapp', 'app', '30 days', 'demo') \gset
COMMIT;

-- the reseller maintains the scheme (settings stay accessible in privacy mode)
BEGIN;
SELECT custos.authenticate(:'rita_token') IS NOT NULL AS ok;
SELECT count(*) FROM custos.log_batch($$[
 {"tenant":"demo-acme","category":"scheme","action":"CREATE","resource_type":"SCHEME","resource_name":"SchemeA",
  "actor_name":"Rita Reseller","target_level":"TENANT","target_name":"TenantA",
  "metadata":{"tenantName":"TenantA","schemeName":"SchemeA"}},
 {"tenant":"demo-acme","category":"scheme","action":"DEPLOY","resource_type":"SCHEME","resource_name":"SchemeA",
  "target_level":"GROUP","target_name":"Group1",
  "metadata":{"tenantName":"TenantA","targetLevel":"GROUP","targetLevelName":"Group1","schemeName":"SchemeA"}},
 {"tenant":"demo-acme","category":"scheme","action":"UPDATE","resource_type":"CAMERA_SETTINGS","resource_name":"brightness",
  "previous_state":{"value":"60"},"new_state":{"value":"75"},
  "metadata":{"tenantName":"TenantA","schemeName":"SchemeA","cameraSettingKey":"brightness"}},
 {"tenant":"demo-acme","category":"scheme","action":"ADD","resource_type":"TRIGGER","resource_name":"SchemeA",
  "metadata":{"tenantName":"TenantA","schemeName":"SchemeA","triggerName":"TriggerX","triggerCategoryName":"Tailgating"}}
]$$::jsonb);
COMMIT;

-- the camera app logs what it does
BEGIN;
SELECT custos.authenticate(:'app_token') IS NOT NULL AS ok;
SELECT custos.log('{"tenant":"demo-acme","category":"device","action":"UPDATE","resource_type":"FIRMWARE",
				   "resource_name":"cam-entrance","previous_state":{"version":"1.4"},"new_state":{"version":"1.5"}}');
COMMIT;

-- desk bookings (seed 003)
BEGIN;
SELECT custos.authenticate(:'dana_token') IS NOT NULL AS ok;
SELECT count(*) FROM custos.log_batch($$[
 {"tenant":"demo-desk","category":"booking","action":"CREATE","resource_type":"BOOKING","resource_id":45887,
  "actor_name":"Dana Desk Owner","subject":"u-7","description":"A booking has been created for \"Table 23\"."},
 {"tenant":"demo-desk","category":"booking","action":"EXPORT","resource_type":"BOOKING",
  "actor_name":"Dana Desk Owner","description":"Bookings have been exported."}
]$$::jsonb);
COMMIT;

-- Capture (issue 4): the scheme application's own tables, tracked.  Every
-- write becomes an event of the row's tenant, in the same transaction, shaped
-- like seed 002's scheme audit log: a deployment (SCHEME DEPLOY), a camera
-- setting update 60 -> 75 (CAMERA_SETTINGS UPDATE) and a trigger association
-- (TRIGGER ADD).  demo.scheme_audit_log shows them in the seed's JSON shape.
\set scheme_schema demo
\ir ../regress/fixtures/scheme_app.psql
-- the reseller's admin works in the scheme application: her principal is
-- the actor of every captured change
BEGIN;
SELECT custos.authenticate(:'rita_token') IS NOT NULL AS ok;
INSERT INTO demo.scheme_camera_setting VALUES ('demo-acme', 'SchemeA', 'brightness', '60');
INSERT INTO demo.scheme_deployment VALUES ('demo-acme', 'SchemeA', 'GROUP', 'Group1');
UPDATE demo.scheme_camera_setting SET value = '75' WHERE tenant = 'demo-acme' AND scheme = 'SchemeA'
   AND setting_key = 'brightness';
INSERT INTO demo.scheme_trigger VALUES ('demo-acme', 'SchemeA', 'TriggerX', 'Tailgating');
COMMIT;
-- custos' events in seed 002's shape (its JSON-in-a-string fields included)
CREATE VIEW demo.scheme_audit_log WITH (security_invoker = true) AS
SELECT e.id, e.tenant, e.occurred_at, e.actor, e.actor_type,
	   jsonb_strip_nulls(jsonb_build_object(
		'auditableResource', e.resource_type, 'auditableAction', e.action, 'resourceName', e.resource_name,
		'additionalMetadata', e.metadata::text, 'previousState', e.previous_state::text,
		'newState', e.new_state::text)) AS entry
  FROM custos.events e
 WHERE e.category = 'scheme' AND e.resource_type IN ('SCHEME', 'CAMERA_SETTINGS', 'TRIGGER', 'FIRMWARE');
GRANT SELECT ON demo.scheme_audit_log TO PUBLIC;

SELECT custos.seal() >= 0 AS sealed;

\pset format unaligned
\pset tuples_only on
SELECT 'rita_reseller_admin=' || :'rita_token'
UNION ALL SELECT 'alice_acme_owner=' || :'alice_token'
UNION ALL SELECT 'walter_works_council=' || :'walter_token'
UNION ALL SELECT 'camera_app_token=' || :'app_token'
UNION ALL SELECT 'dana_desk_owner=' || :'dana_token';
