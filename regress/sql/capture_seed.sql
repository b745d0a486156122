-- capture_seed: tracked tables of a scheme application produce seed 002's
-- audit entries exactly: a scheme deployment, a camera setting update 60 ->
-- 75 and a trigger association (regress/fixtures/scheme_app.psql, which
-- tools/demo.sql loads too).
\set VERBOSITY terse
SELECT custos.seal() >= 0 AS flushed;
SELECT coalesce(max(id), 0) AS start_id FROM custos.event_log \gset
SELECT custos.set_taxonomy_mode('strict');
SELECT custos.create_tenant('seed-a', NULL, 'TenantA');
CREATE SCHEMA seedapp;
\getenv abs_srcdir PG_ABS_SRCDIR
\set scheme_schema seedapp
\set fixtures :abs_srcdir '/fixtures/scheme_app.psql'
\i :fixtures

INSERT INTO seedapp.scheme_camera_setting VALUES ('seed-a', 'SchemeA', 'brightness', '60');
SELECT max(id) AS mark FROM custos.event_log \gset
INSERT INTO seedapp.scheme_deployment VALUES ('seed-a', 'SchemeA', 'GROUP', 'Group1');
UPDATE seedapp.scheme_camera_setting SET value = '75' WHERE setting_key = 'brightness';
INSERT INTO seedapp.scheme_trigger VALUES ('seed-a', 'SchemeA', 'TriggerX', 'Tailgating');
DELETE FROM seedapp.scheme_deployment;

-- the entries in the seed's shape (its JSON-in-a-string fields included)
CREATE TEMP VIEW seed_entry AS
SELECT e.id, e.target_level, e.target_name,
	   jsonb_strip_nulls(jsonb_build_object(
		'auditableResource', e.resource_type, 'auditableAction', e.action, 'resourceName', e.resource_name,
		'additionalMetadata', e.metadata::text, 'previousState', e.previous_state::text,
		'newState', e.new_state::text)) AS entry
  FROM custos.events e WHERE e.id > :mark;
SELECT id - :mark AS n, target_level, target_name, jsonb_pretty(entry) FROM seed_entry ORDER BY id;

-- equal, field for field and key for key, to the seed's three examples
WITH seed(n, entry) AS (VALUES
 (1, $${"auditableResource": "SCHEME", "auditableAction": "DEPLOY", "resourceName": "SchemeA",
	   "additionalMetadata": "{\"tenantName\": \"TenantA\", \"targetLevel\": \"GROUP\", \"targetLevelName\": \"Group1\", \"schemeName\": \"SchemeA\"}"}$$::jsonb),
 (2, $${"auditableResource": "CAMERA_SETTINGS", "auditableAction": "UPDATE", "resourceName": "brightness",
	   "additionalMetadata": "{\"tenantName\": \"TenantA\", \"schemeName\": \"SchemeA\", \"cameraSettingKey\": \"brightness\"}",
	   "previousState": "{\"value\": \"60\"}", "newState": "{\"value\": \"75\"}"}$$),
 (3, $${"auditableResource": "TRIGGER", "auditableAction": "ADD", "resourceName": "SchemeA",
	   "additionalMetadata": "{\"tenantName\": \"TenantA\", \"schemeName\": \"SchemeA\", \"triggerName\": \"TriggerX\", \"triggerCategoryName\": \"Tailgating\"}"}$$))
SELECT s.n,
	   (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(s.entry) k) =
	   (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(c.entry) k) AS same_fields,
	   (s.entry - '{additionalMetadata,previousState,newState}'::text[]) =
	   (c.entry - '{additionalMetadata,previousState,newState}'::text[]) AS same_values,
	   (s.entry ->> 'additionalMetadata')::jsonb = (c.entry ->> 'additionalMetadata')::jsonb AS same_metadata,
	   (s.entry ->> 'previousState')::jsonb IS NOT DISTINCT FROM (c.entry ->> 'previousState')::jsonb
	   AND (s.entry ->> 'newState')::jsonb IS NOT DISTINCT FROM (c.entry ->> 'newState')::jsonb AS same_states
  FROM seed s
  JOIN (SELECT row_number() OVER (ORDER BY id) AS n, entry FROM seed_entry) c USING (n)
 ORDER BY s.n;
SELECT custos.set_taxonomy_mode('open');
