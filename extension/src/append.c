/*-------------------------------------------------------------------------
 *
 * append.c
 *	  custos.log() and custos.log_batch(): validate an event payload,
 *	  encrypt its personal fields and insert it.
 *
 * Appends take no lock that another append or the sealer could hold in a
 * conflicting mode, so writers never wait for each other or for the sealer.
 * Before drawing an event id they take RowExclusiveLock on
 * custos.append_fence: the sealer relies on every transaction holding an id
 * below a freshly drawn value being visible as a holder of that lock (see
 * seal.c).
 *
 * Validation happens before anything is written; an error leaves nothing
 * behind, and a batch is all or nothing because it runs in one statement.
 * In strict taxonomy mode the action, category and resource type must be
 * registered (taxonomy.c); custos' own events (READ events, captured changes)
 * are built from registered names and skip that check.
 *
 * AppendRecordEvent() is the entry for custos' own C callers that have the
 * fields at hand (capture.c): no JSON payload is built and parsed per event.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "access/table.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"

#include "crypto.h"
#include "custos.h"
#include "guard.h"
#include "append.h"
#include "keys.h"
#include "privacy.h"
#include "taxonomy.h"

PG_FUNCTION_INFO_V1(custos_log);
PG_FUNCTION_INFO_V1(custos_log_batch);

/* payload fields, in the order of the INSERT's parameters where stored in clear */
typedef enum EventField
{
	F_TENANT,
	F_OCCURRED_AT,
	F_ACTOR_TYPE,
	F_CATEGORY,
	F_ACTION,
	F_RESOURCE_TYPE,
	F_RESOURCE_ID,
	F_RESOURCE_NAME,
	F_TARGET_LEVEL,
	F_TARGET_NAME,
	F_OUTCOME,
	F_REQUEST_ID,
	/* personal fields: encrypted */
	F_ACTOR,
	F_ACTOR_NAME,
	F_SOURCE_IP,
	F_USER_AGENT,
	F_SUBJECT,
	F_DESCRIPTION,
	F_PREVIOUS_STATE,
	F_NEW_STATE,
	F_METADATA,
	/* set by custos, refused in a payload */
	F_ID,
	F_RECORDED_AT,
	F_ACCESS,
	NUM_FIELDS
} EventField;

typedef enum FieldKind
{
	K_TEXT,						/* a short string (or a number, for ids) */
	K_LONGTEXT,					/* a string bounded only by the event size */
	K_ENUM,						/* a string from a fixed list */
	K_TIME,						/* RFC 3339 string or epoch seconds */
	K_INET,						/* an IP address */
	K_JSON,						/* any JSON value */
	K_SERVER					/* set by custos */
} FieldKind;

typedef struct FieldSpec
{
	const char *name;
	FieldKind	kind;
	const char *const *allowed; /* K_ENUM: NULL-terminated */
} FieldSpec;

static const char *const actor_types[] = {"user", "api_key", "app", "system", NULL};
static const char *const outcomes[] = {"success", "denied", "failure", NULL};
static const char *const target_levels[] = {"TENANT", "GROUP", "ENDPOINT", NULL};

static const FieldSpec fields[NUM_FIELDS] = {
	[F_TENANT] = {"tenant", K_TEXT},
	[F_OCCURRED_AT] = {"occurred_at", K_TIME},
	[F_ACTOR_TYPE] = {"actor_type", K_ENUM, actor_types},
	[F_CATEGORY] = {"category", K_TEXT},
	[F_ACTION] = {"action", K_TEXT},
	[F_RESOURCE_TYPE] = {"resource_type", K_TEXT},
	[F_RESOURCE_ID] = {"resource_id", K_TEXT},
	[F_RESOURCE_NAME] = {"resource_name", K_TEXT},
	[F_TARGET_LEVEL] = {"target_level", K_ENUM, target_levels},
	[F_TARGET_NAME] = {"target_name", K_TEXT},
	[F_OUTCOME] = {"outcome", K_ENUM, outcomes},
	[F_REQUEST_ID] = {"request_id", K_TEXT},
	[F_ACTOR] = {"actor", K_TEXT},
	[F_ACTOR_NAME] = {"actor_name", K_TEXT},
	[F_SOURCE_IP] = {"source_ip", K_INET},
	[F_USER_AGENT] = {"user_agent", K_TEXT},
	[F_SUBJECT] = {"subject", K_TEXT},
	[F_DESCRIPTION] = {"description", K_LONGTEXT},
	[F_PREVIOUS_STATE] = {"previous_state", K_JSON},
	[F_NEW_STATE] = {"new_state", K_JSON},
	[F_METADATA] = {"metadata", K_JSON},
	[F_ID] = {"id", K_SERVER},
	[F_RECORDED_AT] = {"recorded_at", K_SERVER},
	[F_ACCESS] = {"access", K_SERVER},
};

#define FIRST_PERSONAL F_ACTOR
#define LAST_PERSONAL F_METADATA

/* Longest short-text field, in bytes: ids, names and codes, not prose. */
#define MAX_TEXT_BYTES 1024

typedef struct EventInput
{
	char	   *text[NUM_FIELDS];	/* K_TEXT, K_LONGTEXT, K_ENUM, K_INET */
	JsonbValue *json[NUM_FIELDS];	/* K_JSON */
	bool		has_occurred_at;
	TimestampTz occurred_at;
} EventInput;

/* error context: which field of which batch element */
typedef struct ParseContext
{
	int			element;		/* -1 for custos.log() */
	const char *field;
} ParseContext;

static void
parse_error_callback(void *arg)
{
	ParseContext *pc = (ParseContext *) arg;

	if (pc->field && pc->element >= 0)
		errcontext("audit event %d, field \"%s\"", pc->element, pc->field);
	else if (pc->field)
		errcontext("audit event field \"%s\"", pc->field);
	else if (pc->element >= 0)
		errcontext("audit event %d", pc->element);
}

static int
lookup_field(const char *name, int len)
{
	int			i;

	for (i = 0; i < NUM_FIELDS; i++)
		if (strlen(fields[i].name) == len && memcmp(fields[i].name, name, len) == 0)
			return i;
	return -1;
}

static const char *
allowed_list(const char *const *allowed)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; allowed[i]; i++)
		appendStringInfo(&buf, "%s\"%s\"", i ? ", " : "", allowed[i]);
	return buf.data;
}

/* Refuse a value of an enumerated field that is not in its list. */
static void
check_enum(int f, const char *value)
{
	const char *const *a;

	for (a = fields[f].allowed; *a; a++)
		if (strcmp(*a, value) == 0)
			return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value \"%s\" for audit event field \"%s\"",
					value, fields[f].name),
			 errhint("Allowed values: %s.", allowed_list(fields[f].allowed))));
}

static const char *
jbv_type_name(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		default:
			return "object or array";
	}
}

static void
wrong_type(int f, JsonbValue *v, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("audit event field \"%s\" must be %s, not %s",
					fields[f].name, expected, jbv_type_name(v))));
}

static char *
parse_text(int f, JsonbValue *v)
{
	char	   *s;

	if (v->type == jbvNumeric && f == F_RESOURCE_ID)
		return DatumGetCString(DirectFunctionCall1(numeric_out,
												   NumericGetDatum(v->val.numeric)));
	if (v->type != jbvString)
		wrong_type(f, v, "a string");
	if (fields[f].kind != K_LONGTEXT && v->val.string.len > MAX_TEXT_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("audit event field \"%s\" is longer than %d bytes",
						fields[f].name, MAX_TEXT_BYTES)));
	s = pnstrdup(v->val.string.val, v->val.string.len);
	if (strlen(s) != (size_t) v->val.string.len)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("audit event field \"%s\" contains a NUL character",
						fields[f].name)));
	return s;
}

/*
 * timestamptz_in accepts far more than RFC 3339 ("now", "yesterday", times
 * without a zone read in the session's TimeZone).  An audit time must not
 * depend on the session, so require the RFC 3339 shape: a full date, a
 * time, and "Z" or a numeric offset.  The value itself is then parsed by
 * PostgreSQL.  Hand-written because no library here checks just the shape.
 */
static void
check_rfc3339(const char *s)
{
	size_t		len = strlen(s);
	bool		ok = len >= 20 &&
		isdigit((unsigned char) s[0]) && isdigit((unsigned char) s[1]) &&
		isdigit((unsigned char) s[2]) && isdigit((unsigned char) s[3]) &&
		s[4] == '-' && isdigit((unsigned char) s[5]) && isdigit((unsigned char) s[6]) &&
		s[7] == '-' && isdigit((unsigned char) s[8]) && isdigit((unsigned char) s[9]) &&
		(s[10] == 'T' || s[10] == 't' || s[10] == ' ') &&
		isdigit((unsigned char) s[11]) && isdigit((unsigned char) s[12]) && s[13] == ':';

	if (ok)
	{
		const char *end = s + len;

		if (end[-1] == 'Z' || end[-1] == 'z')
			ok = true;
		else
			ok = len >= 25 && (end[-6] == '+' || end[-6] == '-') &&
				isdigit((unsigned char) end[-5]) && isdigit((unsigned char) end[-4]) &&
				end[-3] == ':' &&
				isdigit((unsigned char) end[-2]) && isdigit((unsigned char) end[-1]);
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
				 errmsg("audit event field \"occurred_at\" is not an RFC 3339 time: \"%s\"", s),
				 errhint("Use a form like \"2024-05-01T12:30:00Z\" or \"2024-05-01T14:30:00+02:00\", or epoch seconds.")));
}

/*
 * Parse and validate one payload into *in.  Everything that can be wrong
 * with a payload is reported here, before any write.
 */
static void
parse_event(JsonbContainer *root, EventInput *in, ParseContext *pc)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	int			f = -1;

	memset(in, 0, sizeof(*in));

	if (!JsonContainerIsObject(root))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("audit event must be a JSON object")));

	it = JsonbIteratorInit(root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			f = lookup_field(v.val.string.val, v.val.string.len);
			if (f < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown field \"%.*s\" in audit event",
								Min(v.val.string.len, 64), v.val.string.val),
						 errhint("Allowed fields: tenant, action, occurred_at, actor, actor_type, actor_name, "
								 "source_ip, user_agent, category, resource_type, resource_id, resource_name, "
								 "target_level, target_name, subject, description, outcome, previous_state, "
								 "new_state, metadata, request_id.")));
			if (fields[f].kind == K_SERVER)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("audit event field \"%s\" is set by custos and cannot be supplied",
								fields[f].name)));
			pc->field = fields[f].name;
			continue;
		}
		if (tok != WJB_VALUE)
			continue;

		/* JSON null means "not given" */
		if (v.type == jbvNull)
		{
			pc->field = NULL;
			continue;
		}

		switch (fields[f].kind)
		{
			case K_TEXT:
			case K_LONGTEXT:
				in->text[f] = parse_text(f, &v);
				break;
			case K_ENUM:
				in->text[f] = parse_text(f, &v);
				check_enum(f, in->text[f]);
				break;
			case K_TIME:
				if (v.type == jbvString)
				{
					char	   *s = parse_text(f, &v);

					check_rfc3339(s);

					in->occurred_at = DatumGetTimestampTz(
														  DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
																			  ObjectIdGetDatum(InvalidOid),
																			  Int32GetDatum(-1)));
				}
				else if (v.type == jbvNumeric)
				{
					float8		secs = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
																		  NumericGetDatum(v.val.numeric)));

					in->occurred_at = DatumGetTimestampTz(
														  DirectFunctionCall1(float8_timestamptz, Float8GetDatum(secs)));
				}
				else
					wrong_type(f, &v, "an RFC 3339 string or epoch seconds");
				if (TIMESTAMP_NOT_FINITE(in->occurred_at))
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
							 errmsg("audit event field \"occurred_at\" must be a finite time")));
				in->has_occurred_at = true;
				break;
			case K_INET:
				{
					char	   *s = parse_text(f, &v);
					Datum		ip = DirectFunctionCall1(inet_in, CStringGetDatum(s));

					in->text[f] = DatumGetCString(DirectFunctionCall1(inet_out, ip));
					break;
				}
			case K_JSON:
				in->json[f] = palloc(sizeof(JsonbValue));
				*in->json[f] = v;
				break;
			case K_SERVER:
				break;
		}
		pc->field = NULL;
	}
	pc->field = NULL;

	if (in->text[F_TENANT] == NULL || in->text[F_TENANT][0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("audit event is missing \"tenant\""),
				 errhint("Every event needs \"tenant\" and \"action\".")));
	if (in->text[F_ACTION] == NULL || in->text[F_ACTION][0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("audit event is missing \"action\""),
				 errhint("Every event needs \"tenant\" and \"action\".")));
}

static void
check_size(Jsonb *jb, const char *what)
{
	if (VARSIZE(jb) > (Size) custos_max_event_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is %zu bytes, more than custos.max_event_bytes (%d)",
						what, (size_t) VARSIZE(jb), custos_max_event_bytes),
				 errhint("Keep large documents out of the audit log and record a reference to them.")));
}

/* Everything an insert needs that is the same for every event of a call. */
typedef struct AppendContext
{
	Oid			fence;
	Oid			event_seq;
	Oid			event_log;
	char	   *access;
	bool		trusted;		/* superuser when custos.log() was entered */
} AppendContext;

static void
prepare_append(AppendContext *ac)
{
	Oid			nsp = CustosSchemaOid(false);

	ac->fence = get_relname_relid("append_fence", nsp);
	ac->event_log = get_relname_relid("event_log", nsp);
	ac->event_seq = get_relname_relid("event_id_seq", nsp);
	if (!OidIsValid(ac->fence) || !OidIsValid(ac->event_seq) || !OidIsValid(ac->event_log))
		elog(ERROR, "custos storage is missing");
	ac->access = PrivacyAccess();
	/* before GuardBeginInternal() switches to the owner's identity */
	ac->trusted = superuser();
}

/*
 * Rows go into custos.event_log directly, with their index entries, the way
 * logical replication's apply worker does, instead of through an SPI
 * INSERT: an executor start-up and shutdown per event was the largest part
 * of custos' cost over a plain INSERT.  Nothing is bypassed that applies to
 * custos' own writes: the guard trigger is statement-level and lifted for
 * custos anyway, row-level security does not apply to the owner, and the
 * NOT NULL constraints are checked by ExecSimpleRelationInsert().  The
 * relation, its indexes and the executor state are opened once per call of
 * append_events(), however many events it inserts.
 */
#define EVENT_LOG_NATTS 18		/* custos.event_log's columns, as append_event() fills them */

typedef struct EventInserter
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
} EventInserter;

static void
inserter_open(EventInserter *ins, Oid event_log)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	ins->rel = table_open(event_log, RowExclusiveLock);
	if (RelationGetDescr(ins->rel)->natts != EVENT_LOG_NATTS)
		elog(ERROR, "custos.event_log has %d columns, expected %d",
			 RelationGetDescr(ins->rel)->natts, EVENT_LOG_NATTS);
	ins->estate = CreateExecutorState();
	ins->rri = makeNode(ResultRelInfo);
	rte->rtekind = RTE_RELATION;
	rte->relid = event_log;
	rte->relkind = ins->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(ins->estate, list_make1(rte));
	InitResultRelInfo(ins->rri, ins->rel, 1, NULL, 0);
	ins->estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(ins->rri, false);
	ins->slot = ExecInitExtraTupleSlot(ins->estate, RelationGetDescr(ins->rel),
									   &TTSOpsVirtual);
	AfterTriggerBeginQuery();
}

static void
inserter_put(EventInserter *ins, Datum *values, bool *isnull)
{
	ExecClearTuple(ins->slot);
	memcpy(ins->slot->tts_values, values, sizeof(Datum) * EVENT_LOG_NATTS);
	memcpy(ins->slot->tts_isnull, isnull, sizeof(bool) * EVENT_LOG_NATTS);
	ExecStoreVirtualTuple(ins->slot);
	ExecSimpleRelationInsert(ins->rri, ins->estate, ins->slot);
	ResetPerTupleExprContext(ins->estate);
}

static void
inserter_close(EventInserter *ins)
{
	AfterTriggerEndQuery(ins->estate);
	ExecCloseIndices(ins->rri);
	ExecResetTupleTable(ins->estate->es_tupleTable, false);
	FreeExecutorState(ins->estate);
	table_close(ins->rel, NoLock);
}

static void
push_string(JsonbParseState **st, const char *key, const char *val)
{
	JsonbValue	k,
				v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v.type = jbvString;
	v.val.string.val = (char *) val;
	v.val.string.len = strlen(val);
	pushJsonbValue(st, WJB_KEY, &k);
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* The personal fields as the JSON text that gets encrypted. */
static char *
personal_plaintext(EventInput *in)
{
	JsonbParseState *st = NULL;
	JsonbValue *res;
	int			f;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (f = FIRST_PERSONAL; f <= LAST_PERSONAL; f++)
	{
		if (in->text[f] != NULL)
			push_string(&st, fields[f].name, in->text[f]);
		else if (in->json[f] != NULL)
		{
			JsonbValue	k;

			k.type = jbvString;
			k.val.string.val = (char *) fields[f].name;
			k.val.string.len = strlen(fields[f].name);
			pushJsonbValue(&st, WJB_KEY, &k);
			pushJsonbValue(&st, WJB_VALUE, in->json[f]);
		}
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbToCString(NULL, &JsonbValueToJsonb(res)->root, 0);
}

static Datum
text_or_null(const char *s, char *nullflag)
{
	if (s == NULL)
	{
		*nullflag = 'n';
		return (Datum) 0;
	}
	*nullflag = ' ';
	return CStringGetTextDatum(s);
}

/*
 * Insert one validated event through ins; caller is connected to SPI within
 * GuardBeginInternal().
 */
static int64
append_event(AppendContext *ac, EventInserter *ins, EventInput *in)
{
	TimestampTz recorded_at = GetCurrentTimestamp();
	int32		period = KeysPeriodOf(recorded_at);
	DataKey		actor_key;
	DataKey		subject_key;
	uint8		dek[CUSTOS_HASH_LEN];
	char	   *plain;
	bytea	   *sealed;
	const char *tenant = in->text[F_TENANT];
	Datum		values[EVENT_LOG_NATTS];
	char		nulls[EVENT_LOG_NATTS + 1] = "                  ";
	bool		isnull[EVENT_LOG_NATTS];
	int64		id;
	int			i;

	/* the caller may log for this tenant, and as this actor */
	PrivacyCheckAppend(ac->trusted, tenant, in->text[F_ACTOR]);
	if (in->text[F_ACTOR] == NULL)
	{
		const char *principal = PrivacyCallerPrincipal();

		in->text[F_ACTOR] = principal ? pstrdup(principal) : ac->access;
		if (in->text[F_ACTOR_TYPE] == NULL && principal)
			in->text[F_ACTOR_TYPE] = pstrdup(PrivacyCallerKind());
	}
	if (in->text[F_ACTOR_TYPE] == NULL)
		in->text[F_ACTOR_TYPE] = strcmp(in->text[F_ACTOR], "system") == 0 ? "system" : "user";
	if (in->text[F_OUTCOME] == NULL)
		in->text[F_OUTCOME] = "success";

	KeysGetDataKey(tenant, "actor", in->text[F_ACTOR], period, &actor_key);
	if (in->text[F_SUBJECT] != NULL)
		KeysGetDataKey(tenant, "subject", in->text[F_SUBJECT], period, &subject_key);
	KeysDeriveDek(actor_key.key, in->text[F_SUBJECT] ? subject_key.key : NULL, dek);
	plain = personal_plaintext(in);
	sealed = CryptoSeal(dek, tenant, strlen(tenant), plain, strlen(plain));
	explicit_bzero(dek, sizeof(dek));
	explicit_bzero(plain, strlen(plain));

	/* lock before drawing the id: see the file header */
	LockRelationOid(ac->fence, RowExclusiveLock);
	id = nextval_internal(ac->event_seq, false);

	values[0] = Int64GetDatum(id);
	values[1] = CStringGetTextDatum(tenant);
	values[2] = TimestampTzGetDatum(in->has_occurred_at ? in->occurred_at : recorded_at);
	values[3] = TimestampTzGetDatum(recorded_at);
	values[4] = CStringGetTextDatum(in->text[F_ACTOR_TYPE]);
	for (i = 0; i < 8; i++)
	{
		static const EventField clear[8] = {
			F_CATEGORY, F_ACTION, F_RESOURCE_TYPE, F_RESOURCE_ID,
			F_RESOURCE_NAME, F_TARGET_LEVEL, F_TARGET_NAME, F_OUTCOME
		};

		values[5 + i] = text_or_null(in->text[clear[i]], &nulls[5 + i]);
	}
	values[13] = text_or_null(in->text[F_REQUEST_ID], &nulls[13]);
	values[14] = CStringGetTextDatum(ac->access);
	values[15] = Int64GetDatum(actor_key.key_id);
	if (in->text[F_SUBJECT] != NULL)
		values[16] = Int64GetDatum(subject_key.key_id);
	else
		nulls[16] = 'n';
	values[17] = PointerGetDatum(sealed);

	for (i = 0; i < EVENT_LOG_NATTS; i++)
		isnull[i] = (nulls[i] == 'n');
	inserter_put(ins, values, isnull);
	return id;
}

/*
 * Insert n validated events, storing their ids into ids[]: the one write
 * path of custos.log(), custos.log_batch(), READ events and captured
 * changes.  Storage is written as custos' owner, so prepare_append() must
 * have run first (it notes whether the caller is a superuser).  Each
 * event's working memory (plaintext, ciphertext, datums) is freed before
 * the next one.
 */
static void
append_events(AppendContext *ac, EventInput *in, int n, int64 *ids)
{
	GuardState	gs;

	GuardBeginInternal(&gs);
	PG_TRY();
	{
		EventInserter ins;
		MemoryContext event_cxt;
		MemoryContext old;
		int			i;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		inserter_open(&ins, ac->event_log);
		event_cxt = AllocSetContextCreate(CurrentMemoryContext, "custos append event",
										  ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(event_cxt);
		for (i = 0; i < n; i++)
		{
			ids[i] = append_event(ac, &ins, &in[i]);
			MemoryContextReset(event_cxt);
		}
		MemoryContextSwitchTo(old);
		inserter_close(&ins);
		SPI_finish();
	}
	PG_FINALLY();
	{
		GuardEndInternal(&gs);
	}
	PG_END_TRY();
}

static void
refuse_null(FunctionCallInfo fcinfo, const char *what)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
}

/*
 * Append one event.  access_override, when not NULL, is custos' own
 * identity for an event it records on someone's behalf (a READ event queued
 * by readaudit.c): it is trusted and bypasses the caller checks.
 */
int64
AppendOne(Jsonb *event, const char *access_override)
{
	EventInput	in;
	AppendContext ac;
	ParseContext pc = {-1, NULL};
	ErrorContextCallback errcb;
	int64		id;

	check_size(event, "audit event");
	errcb.callback = parse_error_callback;
	errcb.arg = &pc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	parse_event(&event->root, &in, &pc);
	error_context_stack = errcb.previous;
	if (access_override == NULL)
		TaxonomyCheck(in.text[F_CATEGORY], in.text[F_ACTION], in.text[F_RESOURCE_TYPE]);

	prepare_append(&ac);
	if (access_override != NULL)
	{
		ac.access = pstrdup(access_override);
		ac.trusted = true;
	}
	append_events(&ac, &in, 1, &id);
	return id;
}

/* custos.log(event jsonb) returns bigint */
Datum
custos_log(PG_FUNCTION_ARGS)
{
	refuse_null(fcinfo, "audit event");
	PG_RETURN_INT64(AppendOne(PG_GETARG_JSONB_P(0), NULL));
}

/* custos.log_batch(events jsonb) returns setof bigint */
Datum
custos_log_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Jsonb	   *events;
	int			n;
	int			i;
	EventInput *in;
	AppendContext ac;
	ParseContext pc = {0, NULL};
	ErrorContextCallback errcb;
	int64	   *ids;

	refuse_null(fcinfo, "batch of audit events");
	events = PG_GETARG_JSONB_P(0);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC | MAT_SRF_BLESS);

	if (!JB_ROOT_IS_ARRAY(events) || JB_ROOT_IS_SCALAR(events))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("custos.log_batch() expects a JSON array of events")));
	n = JB_ROOT_COUNT(events);
	if (n > custos_max_batch_events)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("batch has %d events, more than custos.max_batch_events (%d)",
						n, custos_max_batch_events),
				 errhint("Split the batch.")));

	/* validate all before writing any */
	in = palloc(sizeof(EventInput) * Max(n, 1));
	errcb.callback = parse_error_callback;
	errcb.arg = &pc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&events->root, i);
		Jsonb	   *one;

		pc.element = i;
		if (elem->type != jbvBinary)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("audit event must be a JSON object")));
		one = JsonbValueToJsonb(elem);
		check_size(one, "audit event");
		parse_event(&one->root, &in[i], &pc);
		TaxonomyCheck(in[i].text[F_CATEGORY], in[i].text[F_ACTION], in[i].text[F_RESOURCE_TYPE]);
	}
	error_context_stack = errcb.previous;

	prepare_append(&ac);
	ids = palloc(sizeof(int64) * Max(n, 1));
	append_events(&ac, in, n, ids);
	for (i = 0; i < n; i++)
	{
		Datum		id = Int64GetDatum(ids[i]);
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &id, &isnull);
	}

	return (Datum) 0;
}

static JsonbValue *
binary_value(Jsonb *jb)
{
	JsonbValue *v;

	if (jb == NULL)
		return NULL;
	v = palloc(sizeof(JsonbValue));
	v->type = jbvBinary;
	v->val.binary.data = &jb->root;
	v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	return v;
}

/*
 * Append one event recorded by custos itself on the caller's behalf (a
 * change of a tracked table).  The caller's identity goes into "access" and,
 * unless rec->actor is set, "actor" (the principal, else "role:<name>"), as
 * for custos.log(); the event is trusted (no append-right check: the write
 * it records has happened, and must be recorded, whoever made it).  Text
 * fields obey the same limits and value lists (target_level) as in
 * custos.log(); the whole event obeys custos.max_event_bytes.  Inserted by
 * the same path as custos.log()'s events.  Returns the event id.
 */
int64
AppendRecordEvent(const AppendRecord *rec)
{
	EventInput	in;
	AppendContext ac;
	int64		id;
	Size		total = 0;
	int			f;

	memset(&in, 0, sizeof(in));
	in.text[F_TENANT] = (char *) rec->tenant;
	in.text[F_CATEGORY] = (char *) rec->category;
	in.text[F_ACTION] = (char *) rec->action;
	in.text[F_RESOURCE_TYPE] = (char *) rec->resource_type;
	in.text[F_RESOURCE_ID] = (char *) rec->resource_id;
	in.text[F_RESOURCE_NAME] = (char *) rec->resource_name;
	in.text[F_TARGET_LEVEL] = (char *) rec->target_level;
	in.text[F_TARGET_NAME] = (char *) rec->target_name;
	in.text[F_DESCRIPTION] = (char *) rec->description;
	in.text[F_SUBJECT] = (char *) rec->subject;
	in.text[F_ACTOR] = (char *) rec->actor;
	in.json[F_PREVIOUS_STATE] = binary_value(rec->previous_state);
	in.json[F_NEW_STATE] = binary_value(rec->new_state);
	in.json[F_METADATA] = binary_value(rec->metadata);

	if (in.text[F_TENANT] == NULL || in.text[F_TENANT][0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("audit event is missing \"tenant\"")));
	for (f = 0; f < NUM_FIELDS; f++)
	{
		if (in.text[f] == NULL)
			continue;
		if (fields[f].kind != K_LONGTEXT && strlen(in.text[f]) > MAX_TEXT_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("audit event field \"%s\" is longer than %d bytes",
							fields[f].name, MAX_TEXT_BYTES)));
		if (fields[f].kind == K_ENUM)
			check_enum(f, in.text[f]);
		total += strlen(in.text[f]);
	}
	if (rec->previous_state)
		total += VARSIZE(rec->previous_state);
	if (rec->new_state)
		total += VARSIZE(rec->new_state);
	if (rec->metadata)
		total += VARSIZE(rec->metadata);
	if (total > (Size) custos_max_event_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("audit event is %zu bytes, more than custos.max_event_bytes (%d)",
						total, custos_max_event_bytes),
				 errhint("Exclude large columns from capture: custos.track(..., excluded => ARRAY[...]).")));

	prepare_append(&ac);
	ac.trusted = true;
	append_events(&ac, &in, 1, &id);
	return id;
}
