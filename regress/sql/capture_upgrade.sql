-- capture_upgrade: updating a 0.3 database that already holds events to 0.4
-- keeps the taxonomy open (custos fails closed: strict validation would
-- start refusing the applications' own action names), with a notice; a
-- fresh database starts strict.  Capture works on the updated database.
\set VERBOSITY terse
SELECT current_database() AS main_db \gset
CREATE DATABASE custos_upgrade4;
\c custos_upgrade4
\set VERBOSITY terse
CREATE EXTENSION custos VERSION '0.3' CASCADE;
SELECT custos.log('{"tenant": "up4-a", "action": "FROBNICATE"}') > 0 AS logged;
ALTER EXTENSION custos UPDATE TO '0.4';
SELECT extversion FROM pg_extension WHERE extname = 'custos';
SELECT custos.taxonomy_mode();
SELECT custos.log('{"tenant": "up4-a", "action": "FROBNICATE"}') > 0 AS still_logged;
CREATE TABLE up4 (id int PRIMARY KEY, tenant text NOT NULL, v text);
SELECT custos.track('up4', 'OBJECT', 'tenant');
INSERT INTO up4 VALUES (1, 'up4-a', 'x');
SELECT tenant, action, resource_type, resource_id, new_state FROM custos.events WHERE resource_type = 'OBJECT';
\c :main_db
\set VERBOSITY terse
DROP DATABASE custos_upgrade4;
CREATE DATABASE custos_fresh4;
\c custos_fresh4
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION custos CASCADE;
RESET client_min_messages;
SELECT custos.taxonomy_mode();
\c :main_db
\set VERBOSITY terse
DROP DATABASE custos_fresh4;
