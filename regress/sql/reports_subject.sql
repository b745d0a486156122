-- reports_subject: the GDPR Art. 15 subject access report.  Every event by
-- or about a data subject in one tenant, found by the subject's data keys
-- (no decryption of the log), with its fields; accesses by others with
-- dates and purposes but without who (CJEU C-579/21) unless asked for with a
-- reason; a third party's fields withheld; erased data shown as erased.
-- Only an owner/admin with audit.export who may see the tenant's personal
-- data may produce one, and every report is an audit event.
\set VERBOSITY terse
-- the shared helpers: labels for random ids, l(), try_detail() (the
-- refusals' details are the spec), attempt()
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixtures :abs_srcdir '/fixtures/labels.psql'
\i :fixtures
INSERT INTO labels VALUES ('role:' || current_user, 'role:superuser');
CREATE ROLE regress_rp_client;
SELECT custos.seal() >= 0 AS flushed;

-- a reseller, its customer, an unrelated tenant
SELECT custos.create_tenant('rp-rs', NULL, 'Reseller');
SELECT custos.create_tenant('rp-c', 'rp-rs', 'Customer');
SELECT custos.create_tenant('rp-other', NULL, 'Unrelated');
SELECT custos.create_principal('rp-c', 'Olga Owner', 'user', 'owner') AS c_owner \gset
SELECT custos.create_principal('rp-c', 'Adam Admin', 'user', 'admin') AS c_admin \gset
SELECT custos.create_principal('rp-c', 'Mia Member', 'user', 'member') AS c_member \gset
SELECT custos.create_principal('rp-c', 'Dana DPO', 'user', 'member') AS c_dpo \gset
SELECT custos.create_principal('rp-rs', 'Rita Reseller', 'user', 'admin') AS rs_admin \gset
SELECT custos.create_principal('rp-other', 'Otto Owner', 'user', 'owner') AS o_owner \gset
INSERT INTO labels VALUES (:'c_owner', 'c_owner'), (:'c_admin', 'c_admin'), (:'c_member', 'c_member'),
	(:'c_dpo', 'c_dpo'), (:'rs_admin', 'rs_admin'), (:'o_owner', 'o_owner');
SELECT token_id AS c_owner_tid, token AS c_owner_tok FROM custos.issue_token(:'c_owner') \gset
SELECT token_id AS c_admin_tid, token AS c_admin_tok FROM custos.issue_token(:'c_admin') \gset
SELECT token_id AS c_admin_tid2, token AS c_admin_tok2 FROM custos.issue_token(:'c_admin') \gset
SELECT token_id AS c_admin_app_tid, token AS c_admin_app_tok FROM custos.issue_token(:'c_admin', 'app') \gset
SELECT token_id AS c_member_tid, token AS c_member_tok FROM custos.issue_token(:'c_member') \gset
SELECT token_id AS c_dpo_tid, token AS c_dpo_tok FROM custos.issue_token(:'c_dpo') \gset
SELECT token_id AS rs_admin_tid, token AS rs_admin_tok FROM custos.issue_token(:'rs_admin') \gset
SELECT token_id AS o_owner_tid, token AS o_owner_tok FROM custos.issue_token(:'o_owner') \gset
INSERT INTO labels VALUES (:'c_owner_tid', 'tok(c_owner)'), (:'c_admin_tid', 'tok(c_admin)'),
	(:'c_admin_tid2', 'tok2(c_admin)'), (:'c_admin_app_tid', 'app-tok(c_admin)'),
	(:'c_member_tid', 'tok(c_member)'), (:'c_dpo_tid', 'tok(c_dpo)'), (:'rs_admin_tid', 'tok(rs_admin)'),
	(:'o_owner_tid', 'tok(o_owner)');
-- the data protection officer is a member with an explicit audit.export grant
SELECT custos.grant_right('rp-c', :'c_dpo', 'audit.export') > 0 AS dpo_granted;

-- The data subject is anna.  Her events in rp-c, and some that are not hers.
SELECT count(*) AS logged FROM custos.log_batch($$[
 {"tenant": "rp-c", "occurred_at": "2026-11-02T08:00:00Z", "category": "login", "action": "LOGIN",
  "actor": "anna", "actor_name": "Anna A.", "source_ip": "198.51.100.7", "user_agent": "Firefox"},
 {"tenant": "rp-c", "occurred_at": "2026-11-02T09:00:00Z", "category": "access", "action": "VIEW",
  "actor": "bob", "actor_name": "Bob B.", "source_ip": "198.51.100.20", "subject": "anna",
  "resource_type": "BOOKING", "resource_id": "45887", "description": "opened Anna's booking",
  "metadata": {"purpose": "support ticket 17"}},
 {"tenant": "rp-c", "occurred_at": "2026-11-02T10:00:00Z", "category": "user", "action": "UPDATE",
  "actor": "carl", "actor_name": "Carl C.", "subject": "anna", "resource_type": "USER", "resource_id": "u-anna",
  "previous_state": {"phone": "0101"}, "new_state": {"phone": "0202"}},
 {"tenant": "rp-c", "occurred_at": "2026-11-02T11:00:00Z", "category": "booking", "action": "VIEW",
  "actor": "anna", "subject": "dora", "resource_type": "BOOKING", "resource_id": "45999",
  "description": "looked at Dora's booking", "new_state": {"dora": "secret"}},
 {"tenant": "rp-c", "occurred_at": "2026-11-02T12:00:00Z", "category": "user", "action": "UPDATE",
  "actor": "anna", "subject": "anna", "resource_type": "USER", "resource_id": "u-anna",
  "description": "=HYPERLINK(\"http://x\"), changed her own name", "new_state": {"name": "Anna, A."}},
 {"tenant": "rp-c", "occurred_at": "2026-11-02T13:00:00Z", "category": "user", "action": "UPDATE",
  "actor": "bob", "subject": "erin", "resource_type": "USER", "resource_id": "u-erin"},
 {"tenant": "rp-other", "occurred_at": "2026-11-02T14:00:00Z", "category": "login", "action": "LOGIN",
  "actor": "anna"},
 {"tenant": "rp-c", "occurred_at": "2026-11-02T15:00:00Z", "category": "booking", "action": "EXPORT",
  "actor": "bob", "actor_name": "Bob B.", "subject": "anna", "outcome": "denied",
  "resource_type": "BOOKING", "metadata": {"purpose": "payroll"}},
 {"tenant": "rp-c", "occurred_at": "2026-11-02T16:00:00Z", "category": "login", "action": "LOGIN",
  "actor": "annabel"}
]$$);

-- ---------------------------------------------------------------------------
-- Who may: an owner or admin with audit.export that sees the personal data
-- ---------------------------------------------------------------------------
SET ROLE regress_rp_client;
-- no principal at all
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', 'anna')$$) AS no_principal;
-- a member, even with an explicit audit.export grant
BEGIN;
SELECT custos.authenticate(:'c_member_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', 'anna')$$) AS member;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c_dpo_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', 'anna')$$) AS member_with_audit_export;
COMMIT;
-- an admin with an app token sees only its own events
BEGIN;
SELECT custos.authenticate(:'c_admin_app_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', 'anna')$$) AS app_token;
COMMIT;
-- the owner of an unrelated tenant
BEGIN;
SELECT custos.authenticate(:'o_owner_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', 'anna')$$) AS unrelated_owner;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-nowhere', 'anna')$$) AS unknown_tenant;
COMMIT;
-- bad arguments
BEGIN;
SELECT custos.authenticate(:'c_admin_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', NULL)$$) AS null_subject;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', '')$$) AS empty_subject;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', repeat('x', 1025))$$) AS long_subject;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', 'anna', true)$$) AS accessors_without_reason;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', 'anna', true, '  ')$$) AS accessors_blank_reason;
COMMIT;
RESET ROLE;
-- none of the refusals left a report event
SELECT count(*) AS report_events FROM custos.event_log
 WHERE tenant = 'rp-c' AND action = 'EXPORT' AND resource_type = 'REPORT';

-- ---------------------------------------------------------------------------
-- The report, by the customer's admin
-- ---------------------------------------------------------------------------
SET ROLE regress_rp_client;
BEGIN;
SELECT custos.authenticate(:'c_admin_tok') IS NOT NULL AS authenticated;
CREATE TEMP TABLE r1 AS SELECT custos.subject_report('rp-c', 'anna') AS doc;
COMMIT;
RESET ROLE;
SELECT doc ->> 'report' AS report, doc ->> 'format' AS format, doc ->> 'tenant' AS tenant,
       doc ->> 'subject' AS subject, doc ->> 'accessors_included' AS accessors_included,
       doc ->> 'legal_basis' AS legal_basis
  FROM r1;
SELECT doc -> 'counts' AS counts FROM r1;
-- every event by or about anna in rp-c, nothing else (not annabel's, not erin's,
-- not rp-other's); accessors and the third party withheld
SELECT e.occurred_at, e.by_subject AS by, e.about_subject AS about, e.is_access AS acc, e.action,
       e.actor, e.actor_type, e.actor_name, e.source_ip, e.subject, e.description, e.new_state,
       e.purpose, e.withheld, e.personal_data
  FROM r1, jsonb_to_recordset(r1.doc -> 'events') AS e(occurred_at timestamptz, by_subject boolean,
       about_subject boolean, is_access boolean, action text, actor text, actor_type text, actor_name text,
       source_ip inet, subject text, description text, new_state jsonb, purpose text, withheld text[],
       personal_data text)
 ORDER BY e.occurred_at;
-- the accesses: date, what, purpose, outcome; no accessor
SELECT jsonb_pretty(a - 'event_id') AS access FROM r1, jsonb_array_elements(r1.doc -> 'accesses') a
 ORDER BY a ->> 'occurred_at';
-- no accessor's name or id anywhere in the default report
SELECT position('bob' in doc::text) = 0 AS no_bob, position('Bob B.' in doc::text) = 0 AS no_bob_name,
       position('carl' in doc::text) = 0 AS no_carl, position('198.51.100.20' in doc::text) = 0 AS no_bob_ip,
       position('dora' in doc::text) = 0 AS no_dora, position(:'c_admin' in doc::text) = 0 AS no_admin_id
  FROM r1;

-- the report is an audit event of the tenant: who, when, about whom (in the
-- encrypted subject field only), whether accessors were named
SELECT pg_temp.l(e.actor) AS actor, e.category, e.action, e.resource_type, e.resource_id, e.resource_name,
       e.subject, e.new_state, e.metadata, pg_temp.l(e.access) AS access
  FROM custos.events e, r1 WHERE e.id = (r1.doc ->> 'report_id')::bigint;
-- nothing of anna in its clear columns
SELECT position('anna' in concat_ws('|', l.tenant, l.category, l.action, l.resource_type, l.resource_id,
                                    l.resource_name, l.target_name, l.request_id, l.access)) = 0 AS no_subject_in_clear,
       position(convert_to('anna', 'UTF8') in l.personal) = 0 AS encrypted
  FROM custos.event_log l, r1 WHERE l.id = (r1.doc ->> 'report_id')::bigint;
-- reading the log for the report was itself recorded (the read marker)
SELECT custos.seal() > 0 AS sealed;
SELECT pg_temp.l(e.actor) AS actor, e.category, e.action, e.resource_type, e.resource_id
  FROM custos.events e WHERE e.tenant = 'rp-c' AND e.action = 'READ' AND e.actor = :'c_admin'
 ORDER BY e.id DESC LIMIT 1;

-- ---------------------------------------------------------------------------
-- The owner names the accessors, with a reason; the earlier report shows
-- ---------------------------------------------------------------------------
SET ROLE regress_rp_client;
BEGIN;
SELECT custos.authenticate(:'c_owner_tok') IS NOT NULL AS authenticated;
CREATE TEMP TABLE r2 AS
	SELECT custos.subject_report('rp-c', 'anna', true, 'Anna disputes the lawfulness of the accesses') AS doc;
COMMIT;
RESET ROLE;
SELECT doc ->> 'accessors_included' AS accessors_included, doc -> 'counts' AS counts FROM r2;
SELECT a ->> 'action' AS action, a ->> 'purpose' AS purpose, pg_temp.l(a ->> 'accessor') AS accessor,
       a ->> 'accessor_name' AS accessor_name, a ->> 'outcome' AS outcome
  FROM r2, jsonb_array_elements(r2.doc -> 'accesses') a ORDER BY (a ->> 'event_id')::bigint;
SELECT e.new_state FROM custos.events e, r2 WHERE e.id = (r2.doc ->> 'report_id')::bigint;

-- ---------------------------------------------------------------------------
-- CSV: the same rows, formulas neutralised, for COPY
-- ---------------------------------------------------------------------------
SET ROLE regress_rp_client;
BEGIN;
SELECT custos.authenticate(:'c_admin_tok') IS NOT NULL AS authenticated;
-- start, then read: a statement does not see the event it appends itself
SELECT custos.subject_report_start('rp-c', 'anna') AS rid \gset
COPY (SELECT action, actor, subject, description, new_state, withheld, personal_data
        FROM custos.subject_report_csv(:rid) WHERE category <> 'privacy')
  TO STDOUT WITH (FORMAT csv, HEADER);
SELECT count(*) AS rows, count(*) FILTER (WHERE about_subject) AS about
  FROM custos.subject_report_csv(:rid);
COMMIT;
-- a started report is read only by the token that started it
BEGIN;
SELECT custos.authenticate(:'c_admin_tok2') IS NOT NULL AS authenticated;
SELECT replace(pg_temp.try_detail(format('SELECT * FROM custos.subject_report_rows(%s)', :rid)), :'rid', '<rid>') AS other_token;
SELECT replace(pg_temp.try_detail(format('SELECT custos.subject_report_prepare(%s)', :rid)), :'rid', '<rid>') AS other_token_prepare;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c_member_tok') IS NOT NULL AS authenticated;
SELECT replace(pg_temp.try_detail(format('SELECT * FROM custos.subject_report_scope(%s)', :rid)), :'rid', '<rid>') AS member_scope;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c_admin_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail('SELECT * FROM custos.subject_report_rows(1)') AS not_a_report;
SELECT replace(pg_temp.try_detail(format('SELECT custos.subject_report_prepare(%s)', :rid)), :'rid', '<rid>') AS prepare;
SELECT current_setting('custos_report.id') = :'rid' AS kept_for_copy;
COMMIT;
-- internal helpers are closed to PUBLIC
SELECT pg_temp.try_detail($$SELECT custos.scope_ref('rp-c', 'subject', 'anna')$$) AS scope_ref;
SELECT pg_temp.try_detail($$SELECT custos.support_settings()$$) AS support_settings;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Erased (custos.erase_subject(), 0.5): the events are still found (by
-- their keys' scope references), with their state and without values.
-- ---------------------------------------------------------------------------
SELECT custos.erase_subject('rp-c', 'anna', 'Art. 17 request') ->> 'keys_destroyed' AS keys_destroyed;
-- the events view agrees
SELECT personal_data, count(*) FROM custos.events WHERE tenant = 'rp-c' AND personal_data <> 'clear'
 GROUP BY 1 ORDER BY 1;
SET ROLE regress_rp_client;
BEGIN;
SELECT custos.authenticate(:'c_admin_tok') IS NOT NULL AS authenticated;
CREATE TEMP TABLE r3 AS SELECT custos.subject_report('rp-c', 'anna') AS doc;
-- a report started before the erasure cannot be read any more
SELECT replace(pg_temp.try_detail(format('SELECT * FROM custos.subject_report_rows(%s)', :rid)), :'rid', '<rid>') AS old_report;
COMMIT;
RESET ROLE;
SELECT doc -> 'counts' AS counts FROM r3;
SELECT e.occurred_at, e.by_subject AS by, e.about_subject AS about, e.action,
       regexp_replace(e.actor, '^anon-[0-9a-f]{12}$', 'anon-<pseudonym>') AS actor, e.actor_name,
       e.subject, e.description, e.new_state, e.personal_data, e.withheld
  FROM r3, jsonb_to_recordset(r3.doc -> 'events') AS e(occurred_at timestamptz, by_subject boolean,
       about_subject boolean, action text, actor text, actor_name text, subject text, description text,
       new_state jsonb, personal_data text, withheld text[])
 WHERE e.occurred_at < '2026-11-03'
 ORDER BY e.occurred_at;
-- a subject without events: an empty report (the report event itself is
-- about the subject, and excluded from its own report)
SET ROLE regress_rp_client;
BEGIN;
SELECT custos.authenticate(:'c_admin_tok') IS NOT NULL AS authenticated;
SELECT doc -> 'counts' AS counts, doc -> 'events' AS events, doc -> 'accesses' AS accesses
  FROM (SELECT custos.subject_report('rp-c', 'nobody-here') AS doc) d;
COMMIT;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- custos.scope_ref() agrees with keys.c on every key of the tenant
-- ---------------------------------------------------------------------------
SELECT count(*) AS subject_keys_found FROM custos.data_key k
 WHERE k.tenant = 'rp-c' AND k.scope = 'subject'
   AND k.scope_ref IN (SELECT custos.scope_ref('rp-c', 'subject', s) FROM unnest('{anna,dora,erin}'::text[]) s);
SELECT count(*) AS actor_keys_found FROM custos.data_key k
 WHERE k.tenant = 'rp-c' AND k.scope = 'actor'
   AND k.scope_ref IN (SELECT custos.scope_ref('rp-c', 'actor', s) FROM unnest('{anna,bob,carl,annabel}'::text[]) s);

-- ---------------------------------------------------------------------------
-- Privacy mode: the reseller admin may report on the customer, until the
-- customer switches privacy mode on
-- ---------------------------------------------------------------------------
SET ROLE regress_rp_client;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS authenticated;
SELECT (custos.subject_report('rp-c', 'anna') -> 'counts' ->> 'events')::int > 0 AS reseller_reports;
COMMIT;
-- the owner switches privacy mode on with a token it issued itself
BEGIN;
SELECT custos.authenticate(:'c_owner_tok') IS NOT NULL AS authenticated;
SELECT token AS c_owner_own_tok FROM custos.issue_token(:'c_owner') \gset
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c_owner_own_tok') IS NOT NULL AS authenticated;
SELECT custos.set_privacy_mode('rp-c', true);
COMMIT;
BEGIN;
SELECT custos.authenticate(:'rs_admin_tok') IS NOT NULL AS authenticated;
SELECT pg_temp.try_detail($$SELECT custos.subject_report('rp-c', 'anna')$$) AS reseller_in_privacy_mode;
COMMIT;
BEGIN;
SELECT custos.authenticate(:'c_owner_own_tok') IS NOT NULL AS authenticated;
SELECT (custos.subject_report('rp-c', 'anna') -> 'counts' ->> 'events')::int > 0 AS own_owner_reports;
COMMIT;
RESET ROLE;

