/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  Data keys for personal fields (crypto-shredding) and reading them back.
 *
 * Every event's personal fields are encrypted under a data-encryption key
 * derived from two data keys: the actor's key for the day of recording and,
 * if the event names a data subject, the subject's key for that day.  Either
 * key destroyed makes the fields unrecoverable, so erasing a subject (by or
 * about) or anonymising a day destroys keys and never rewrites an event: the
 * hash chain, which covers the ciphertext, keeps verifying.
 *
 * Keys are found by scope_ref = HMAC(tenant secret, scope || 0 || value), so
 * custos.data_key never stores an actor or subject id in clear.
 *
 * Cache: a backend-local hash of keys already looked up.  An entry created by
 * a transaction that aborts must not survive it (its row is gone), so any
 * abort empties the cache.  Key destruction bumps a shared generation
 * counter, on which every backend empties its cache; without shared memory
 * (custos not preloaded) the cache lives for one transaction only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "chain.h"
#include "crypto.h"
#include "custos.h"
#include "keys.h"

PG_FUNCTION_INFO_V1(custos_personal_text);
PG_FUNCTION_INFO_V1(custos_personal_json);

/*
 * Cache key: two 64-bit hashes of the lookup (tenant, scope, value, period);
 * the entry keeps the lookup itself and a hit must match it byte for byte,
 * so a hash collision, however constructed, only costs a miss.
 */
typedef struct KeyCacheTag
{
	uint64		h1;
	uint64		h2;
} KeyCacheTag;

typedef struct KeyCacheEntry
{
	KeyCacheTag tag;
	char	   *lookup;			/* in KeyCacheContext */
	int			lookup_len;
	int64		key_id;
	uint8		key[CUSTOS_HASH_LEN];
} KeyCacheEntry;

static MemoryContext KeyCacheContext = NULL;
static HTAB *key_cache = NULL;
static uint64 key_cache_generation = 0;
static bool callbacks_registered = false;

static uint8 installation_secret[CUSTOS_HASH_LEN];
static bool have_installation_secret = false;
static Oid	cached_schema = InvalidOid;
static SPIPlanPtr plan_key_get = NULL;

static void derive_dek(const uint8 *actor_key, const uint8 *subject_key, uint8 *dek);
static SPIPlanPtr plan_key_put = NULL;
static bool keys_destroyed_in_xact = false;

void
KeysInvalidateAll(void)
{
	if (KeyCacheContext != NULL)
		MemoryContextReset(KeyCacheContext);
	key_cache = NULL;
	have_installation_secret = false;
}

static void
keys_xact_callback(XactEvent event, void *arg)
{
	/*
	 * A prepared transaction may still roll back, taking keys it created
	 * with it: forget them as on abort.
	 */
	if (keys_destroyed_in_xact &&
		(event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		 event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_ABORT))
	{
		keys_destroyed_in_xact = false;
		if (custos_shared != NULL)
			pg_atomic_fetch_add_u64(&custos_shared->key_generation, 1);
	}
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE ||
		(custos_shared == NULL && event == XACT_EVENT_COMMIT))
		KeysInvalidateAll();
}

static void
keys_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		KeysInvalidateAll();
}

static HTAB *
get_cache(void)
{
	HASHCTL		ctl;

	if (!callbacks_registered)
	{
		RegisterXactCallback(keys_xact_callback, NULL);
		RegisterSubXactCallback(keys_subxact_callback, NULL);
		KeyCacheContext = AllocSetContextCreate(CacheMemoryContext,
												"custos key cache",
												ALLOCSET_SMALL_SIZES);
		callbacks_registered = true;
	}

	/* a dropped and recreated extension has other keys and another secret */
	if (CustosSchemaOid(false) != cached_schema)
	{
		KeysInvalidateAll();
		cached_schema = CustosSchemaOid(false);
	}

	if (custos_shared != NULL)
	{
		uint64		gen = pg_atomic_read_u64(&custos_shared->key_generation);

		if (gen != key_cache_generation)
		{
			KeysInvalidateAll();
			key_cache_generation = gen;
		}
	}

	if (key_cache == NULL)
	{
		ctl.keysize = sizeof(KeyCacheTag);
		ctl.entrysize = sizeof(KeyCacheEntry);
		ctl.hcxt = KeyCacheContext;
		key_cache = hash_create("custos data keys", 256, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return key_cache;
}

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/* The first column of the single row SPI returned, as bytea; NULL if none. */
static bytea *
spi_first_bytea(int col)
{
	bool		isnull;
	Datum		d;

	if (SPI_processed == 0)
		return NULL;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);
	if (isnull)
		return NULL;
	return DatumGetByteaPP(d);
}

/*
 * The tenant's HMAC key: HMAC-SHA-256(installation secret, "tenant" || 0 ||
 * tenant).  Derived rather than stored per tenant, so that the first events
 * of a new tenant in concurrent sessions never wait for each other.
 */
static void
tenant_secret(const char *tenant, uint8 *secret)
{
	StringInfoData buf;

	if (!have_installation_secret)
	{
		bytea	   *b;

		/* the oldest row: see the comment on custos.installation */
		if (SPI_execute("SELECT secret FROM custos.installation ORDER BY created_at, secret LIMIT 1",
						true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read installation secret");
		b = spi_first_bytea(1);
		if (b == NULL || VARSIZE_ANY_EXHDR(b) != CUSTOS_HASH_LEN)
			elog(ERROR, "custos installation secret is missing or malformed");
		memcpy(installation_secret, VARDATA_ANY(b), CUSTOS_HASH_LEN);
		have_installation_secret = true;
	}
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, "tenant", sizeof("tenant"));
	appendBinaryStringInfo(&buf, tenant, strlen(tenant));
	CryptoHmacSha256(installation_secret, CUSTOS_HASH_LEN, buf.data, buf.len, secret);
	pfree(buf.data);
}

/*
 * Where keys of (tenant, scope, value) are found: HMAC-SHA-256 under the
 * tenant secret of scope || 0 || value.  Caller is connected to SPI.
 */
static void
scope_ref_under(const uint8 *secret, const char *scope, const char *value, uint8 *ref)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, scope, strlen(scope) + 1);
	appendBinaryStringInfo(&buf, value, strlen(value));
	CryptoHmacSha256(secret, CUSTOS_HASH_LEN, buf.data, buf.len, ref);
	pfree(buf.data);
}

void
KeysScopeRef(const char *tenant, const char *scope, const char *value, uint8 *ref)
{
	uint8		secret[CUSTOS_HASH_LEN];

	tenant_secret(tenant, secret);
	scope_ref_under(secret, scope, value, ref);
	explicit_bzero(secret, sizeof(secret));
}

static bool
keys_is_zero(const uint8 *key)
{
	uint8		acc = 0;
	int			i;

	for (i = 0; i < CUSTOS_HASH_LEN; i++)
		acc |= key[i];
	return acc == 0;
}

/*
 * Keys were destroyed in this transaction: every backend drops its cached
 * keys now (so none encrypts under a key whose bytes are already zeroed)
 * and again at commit (so none keeps one whose row says it is gone).
 */
void
KeysNoteDestroyed(void)
{
	KeysInvalidateAll();
	keys_destroyed_in_xact = true;
	if (custos_shared != NULL)
		pg_atomic_fetch_add_u64(&custos_shared->key_generation, 1);
}

/* Day number since 1970-01-01 UTC: the period a data key covers. */
int32
KeysPeriodOf(TimestampTz ts)
{
	int64		unix_us = ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	int64		day = unix_us / USECS_PER_DAY;

	if (unix_us < 0 && unix_us % USECS_PER_DAY != 0)
		day--;
	return (int32) day;
}

static bool
read_key_row(DataKey *out)
{
	bool		isnull;
	bytea	   *k;

	if (SPI_processed == 0)
		return false;
	out->key_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	k = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull || VARSIZE_ANY_EXHDR(k) != CUSTOS_HASH_LEN)
		elog(ERROR, "data key %lld is malformed", (long long) out->key_id);
	memcpy(out->key, VARDATA_ANY(k), CUSTOS_HASH_LEN);
	return true;
}

/*
 * The live data key of (tenant, scope, value, period), created on first use.
 * Caller is connected to SPI inside GuardBeginInternal().
 */
void
KeysGetDataKey(const char *tenant, const char *scope, const char *value,
			   int32 period, DataKey *out)
{
	HTAB	   *cache = get_cache();
	KeyCacheTag tag;
	StringInfoData lookup;
	uint8		secret[CUSTOS_HASH_LEN];
	uint8		ref[CUSTOS_HASH_LEN];
	StringInfoData buf;
	KeyCacheEntry *entry;
	bool		found;
	Datum		arg[6];
	char		nulls[6] = "      ";
	bytea	   *refb;
	bytea	   *keyb;

	/* the NUL-separated lookup, and its cache tag */
	initStringInfo(&lookup);
	appendBinaryStringInfo(&lookup, tenant, strlen(tenant) + 1);
	appendBinaryStringInfo(&lookup, scope, strlen(scope) + 1);
	appendBinaryStringInfo(&lookup, value, strlen(value) + 1);
	appendBinaryStringInfo(&lookup, (char *) &period, sizeof(period));
	tag.h1 = hash_bytes_extended((unsigned char *) lookup.data, lookup.len, 0);
	tag.h2 = hash_bytes_extended((unsigned char *) lookup.data, lookup.len, 0x637573746f73LL);

	entry = hash_search(cache, &tag, HASH_FIND, NULL);
	if (entry != NULL && entry->lookup_len == lookup.len &&
		memcmp(entry->lookup, lookup.data, lookup.len) == 0)
	{
		out->key_id = entry->key_id;
		memcpy(out->key, entry->key, CUSTOS_HASH_LEN);
		return;
	}

	tenant_secret(tenant, secret);
	scope_ref_under(secret, scope, value, ref);
	initStringInfo(&buf);

	if (plan_key_get == NULL)
	{
		Oid			tg[4] = {TEXTOID, TEXTOID, BYTEAOID, INT4OID};
		Oid			tp[6] = {TEXTOID, TEXTOID, BYTEAOID, INT4OID, BYTEAOID, TEXTOID};

		plan_key_get = prepare_kept(
									"SELECT key_id, key FROM custos.data_key "
									"WHERE tenant OPERATOR(pg_catalog.=) $1 AND scope OPERATOR(pg_catalog.=) $2 "
									"AND scope_ref OPERATOR(pg_catalog.=) $3 AND period OPERATOR(pg_catalog.=) $4 "
									"AND key IS NOT NULL ORDER BY key_id DESC LIMIT 1",
									4, tg);
		plan_key_put = prepare_kept(
									"INSERT INTO custos.data_key (tenant, scope, scope_ref, period, key, pseudonym) "
									"VALUES ($1, $2, $3, $4, $5, $6) RETURNING key_id, key",
									6, tp);
	}

	refb = palloc(VARHDRSZ + CUSTOS_HASH_LEN);
	SET_VARSIZE(refb, VARHDRSZ + CUSTOS_HASH_LEN);
	memcpy(VARDATA(refb), ref, CUSTOS_HASH_LEN);
	arg[0] = CStringGetTextDatum(tenant);
	arg[1] = CStringGetTextDatum(scope);
	arg[2] = PointerGetDatum(refb);
	arg[3] = Int32GetDatum(period);

	if (SPI_execute_plan(plan_key_get, arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read data key");

	/*
	 * A key being destroyed has its bytes zeroed in place before its row is
	 * updated (retention.c), and an interrupted destruction leaves them so:
	 * such a key is never used again, a fresh one takes its place.
	 */
	if (!read_key_row(out) || keys_is_zero(out->key))
	{
		keyb = palloc(VARHDRSZ + CUSTOS_HASH_LEN);
		SET_VARSIZE(keyb, VARHDRSZ + CUSTOS_HASH_LEN);
		CryptoRandom((uint8 *) VARDATA(keyb), CUSTOS_HASH_LEN);
		arg[4] = PointerGetDatum(keyb);

		/*
		 * An actor's pseudonym stays the same across days (it depends on the
		 * tenant secret and the actor only), so anonymised events of one
		 * actor can still be told apart from another's.
		 */
		if (strcmp(scope, "actor") == 0)
		{
			uint8		ps[CUSTOS_HASH_LEN];
			char	   *hex;

			resetStringInfo(&buf);
			appendBinaryStringInfo(&buf, "pseudonym", sizeof("pseudonym"));
			appendBinaryStringInfo(&buf, value, strlen(value));
			CryptoHmacSha256(secret, CUSTOS_HASH_LEN, buf.data, buf.len, ps);
			hex = ChainHex(ps, 6);
			arg[5] = CStringGetTextDatum(psprintf("anon-%s", hex));
		}
		else
			nulls[5] = 'n';

		/*
		 * No unique constraint: a session that meets a new actor at the same
		 * time as another creates a second key instead of waiting for the
		 * other's commit.  Both stay valid; erasure destroys all of them.
		 */
		if (SPI_execute_plan(plan_key_put, arg, nulls, false, 1) != SPI_OK_INSERT_RETURNING ||
			!read_key_row(out))
			elog(ERROR, "could not store data key");
	}

	entry = hash_search(cache, &tag, HASH_ENTER, &found);
	entry->lookup = MemoryContextAlloc(KeyCacheContext, lookup.len);
	memcpy(entry->lookup, lookup.data, lookup.len);
	entry->lookup_len = lookup.len;
	entry->key_id = out->key_id;
	memcpy(entry->key, out->key, CUSTOS_HASH_LEN);
}

/*
 * The key that encrypts one event's personal fields: HMAC-SHA-256 keyed by
 * the actor's key over "custos-dek-v1" and the subject's key, if any.  The
 * last derivation is remembered: an HMAC costs as much as the rest of an
 * append's cryptography, and consecutive events mostly share their keys.
 */
void
KeysDeriveDek(const uint8 *actor_key, const uint8 *subject_key, uint8 *dek)
{
	static uint8 last_actor[CUSTOS_HASH_LEN];
	static uint8 last_subject[CUSTOS_HASH_LEN];
	static bool last_has_subject = false;
	static uint8 last_dek[CUSTOS_HASH_LEN];
	static bool last_valid = false;

	if (last_valid &&
		memcmp(last_actor, actor_key, CUSTOS_HASH_LEN) == 0 &&
		last_has_subject == (subject_key != NULL) &&
		(subject_key == NULL || memcmp(last_subject, subject_key, CUSTOS_HASH_LEN) == 0))
	{
		memcpy(dek, last_dek, CUSTOS_HASH_LEN);
		return;
	}
	derive_dek(actor_key, subject_key, dek);
	memcpy(last_actor, actor_key, CUSTOS_HASH_LEN);
	last_has_subject = (subject_key != NULL);
	if (subject_key)
		memcpy(last_subject, subject_key, CUSTOS_HASH_LEN);
	memcpy(last_dek, dek, CUSTOS_HASH_LEN);
	last_valid = true;
}

static void
derive_dek(const uint8 *actor_key, const uint8 *subject_key, uint8 *dek)
{
	uint8		msg[sizeof("custos-dek-v1") - 1 + CUSTOS_HASH_LEN];
	size_t		len = sizeof("custos-dek-v1") - 1;

	memcpy(msg, "custos-dek-v1", len);
	if (subject_key != NULL)
	{
		memcpy(msg + len, subject_key, CUSTOS_HASH_LEN);
		len += CUSTOS_HASH_LEN;
	}
	CryptoHmacSha256(actor_key, CUSTOS_HASH_LEN, msg, len, dek);
}

/*
 * Reading personal fields.  The view custos.events calls this once per
 * personal column, so the last decrypted event is kept and reused: one
 * decryption per row however many columns are read.  The cache is keyed by
 * every input that determines the plaintext (the sealed bytes, both keys and
 * the tenant), compared byte for byte, so the result never depends on what
 * the session decrypted before.
 */
static MemoryContext OpenCacheContext = NULL;
static bytea *open_inputs[4];	/* sealed, actor key, subject key, tenant */
static Jsonb *open_doc = NULL;	/* NULL: nothing cached */

static bool
same_varlena(const bytea *cached, const bytea *arg)
{
	if (cached == NULL || arg == NULL)
		return cached == arg;
	return VARSIZE_ANY_EXHDR(cached) == VARSIZE_ANY_EXHDR(arg) &&
		memcmp(VARDATA_ANY(cached), VARDATA_ANY(arg), VARSIZE_ANY_EXHDR(arg)) == 0;
}

static Jsonb *
open_personal(FunctionCallInfo fcinfo)
{
	bytea	   *in[4];
	bool		has_subject;
	uint8		dek[CUSTOS_HASH_LEN];
	char	   *plain;
	size_t		plainlen;
	MemoryContext old;
	int			i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		return NULL;
	has_subject = PG_GETARG_BOOL(4);
	if (has_subject && PG_ARGISNULL(2))
		return NULL;

	in[0] = PG_GETARG_BYTEA_PP(0);
	in[1] = PG_GETARG_BYTEA_PP(1);
	in[2] = has_subject ? PG_GETARG_BYTEA_PP(2) : NULL;
	in[3] = (bytea *) PG_GETARG_TEXT_PP(3);
	if (VARSIZE_ANY_EXHDR(in[1]) != CUSTOS_HASH_LEN ||
		(in[2] != NULL && VARSIZE_ANY_EXHDR(in[2]) != CUSTOS_HASH_LEN))
		return NULL;

	if (open_doc != NULL)
	{
		for (i = 0; i < 4; i++)
			if (!same_varlena(open_inputs[i], in[i]))
				break;
		if (i == 4)
			return open_doc;
	}

	KeysDeriveDek((uint8 *) VARDATA_ANY(in[1]),
				  in[2] ? (uint8 *) VARDATA_ANY(in[2]) : NULL, dek);
	plain = CryptoOpen(dek, VARDATA_ANY(in[3]), VARSIZE_ANY_EXHDR(in[3]),
					   in[0], &plainlen);
	explicit_bzero(dek, sizeof(dek));
	if (plain == NULL)
		return NULL;

	if (OpenCacheContext == NULL)
		OpenCacheContext = AllocSetContextCreate(TopMemoryContext,
												 "custos personal fields",
												 ALLOCSET_SMALL_SIZES);
	open_doc = NULL;
	MemoryContextReset(OpenCacheContext);
	old = MemoryContextSwitchTo(OpenCacheContext);
	for (i = 0; i < 4; i++)
		open_inputs[i] = in[i] ? (bytea *) PG_DETOAST_DATUM_COPY(PointerGetDatum(in[i])) : NULL;
	open_doc = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(plain)));
	MemoryContextSwitchTo(old);
	explicit_bzero(plain, plainlen);
	return open_doc;
}

static JsonbValue *
personal_value(FunctionCallInfo fcinfo)
{
	Jsonb	   *doc = open_personal(fcinfo);
	text	   *field;
	JsonbValue	k;

	if (doc == NULL || PG_ARGISNULL(5))
		return NULL;
	field = PG_GETARG_TEXT_PP(5);
	k.type = jbvString;
	k.val.string.val = VARDATA_ANY(field);
	k.val.string.len = VARSIZE_ANY_EXHDR(field);
	return findJsonbValueFromContainer(&doc->root, JB_FOBJECT, &k);
}

/* custos.personal_text(): a personal field as text (strings unquoted). */
Datum
custos_personal_text(PG_FUNCTION_ARGS)
{
	JsonbValue *v = personal_value(fcinfo);

	if (v == NULL || v->type == jbvNull)
		PG_RETURN_NULL();
	if (v->type == jbvString)
		PG_RETURN_TEXT_P(cstring_to_text_with_len(v->val.string.val, v->val.string.len));
	PG_RETURN_TEXT_P(cstring_to_text(JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0)));
}

/* custos.personal_json(): a personal field as jsonb. */
Datum
custos_personal_json(PG_FUNCTION_ARGS)
{
	JsonbValue *v = personal_value(fcinfo);

	if (v == NULL || v->type == jbvNull)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(JsonbValueToJsonb(v));
}
