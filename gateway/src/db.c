/*-------------------------------------------------------------------------
 *
 * db.c
 *	  Every SQL statement of the gateway, and the pool of PostgreSQL
 *	  connections they run on.
 *
 * One request is one transaction: custos.authenticate(<bearer token>)
 * followed by the endpoint's one statement, sent together in libpq's
 * pipeline mode with a single Sync, so that both run in one implicit
 * transaction (committed at the Sync if both succeed, rolled back if either
 * fails) at the cost of one network round trip.  The caller's identity is
 * bound to that transaction by custos and gone at its end; nothing about the
 * caller is kept in the session, so any pooled connection serves any caller.
 *
 * The pool: config.pool slots, each holding one connection or none.  A
 * request takes a slot for the whole call (an export for the whole stream),
 * waits at most config.pool_wait_ms for one (then DB_BUSY: 503, never an
 * unbounded queue), and connects lazily.  A connection found broken is
 * closed and made again; after a failed connect the pool answers
 * DB_UNAVAILABLE for a second without trying, so that a database that is
 * down costs requests nothing.  When the database is back, the next request
 * reconnects: no restart of the gateway is needed.
 *
 * Retries: a transaction that fails with 40001 or 40P01 runs again, at most
 * config.retries times.  A connection that breaks before the request was
 * sent, or during a read-only call, is replaced and the call runs again
 * once; a write whose connection broke after sending is not repeated (its
 * fate is unknown: the client may retry with an Idempotency-Key).
 *
 * Each session: search_path = pg_catalog, pg_temp (every name in the
 * statements is schema-qualified), jit = off, statement_timeout =
 * config.statement_timeout_ms, and the statements below prepared once.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "main.h"
#include "metrics.h"

typedef struct StatementDef
{
	const char *name;
	const char *sql;
} StatementDef;

/* custos.authenticate(): the first statement of every authenticated call */
static const char *const auth_name = "auth";
static const char *const auth_sql =
"SELECT custos.authenticate($1) OPERATOR(pg_catalog.->>) 'token'";

static const StatementDef statements[N_STATEMENTS] = {
	/* POST /v1/events: the ids, the first for Location, whether replayed */
	[STMT_EVENTS_APPEND] = {"events_append",
		"SELECT r, (r OPERATOR(pg_catalog.->) 'ids') OPERATOR(pg_catalog.->>) 0, "
		"r OPERATOR(pg_catalog.->>) 'replayed' "
	"FROM custos.append_events($1::jsonb, $2) AS r"},
	/* GET /v1/events */
	[STMT_EVENTS_LIST] = {"events_list",
	"SELECT custos.query_events($1::jsonb, $2, $3::integer, $4)"},
	/* GET /v1/events/{id} */
	[STMT_EVENTS_GET] = {"events_get",
	"SELECT custos.get_event($1::bigint)"},
	/* GET /v1/events/export: validates and keeps the filters for the COPY */
	[STMT_EXPORT_PREPARE] = {"export_prepare",
	"SELECT custos.export_prepare($1::jsonb)"},
	/* GET /v1/verify */
	[STMT_CHAIN_VERIFY] = {"chain_verify",
	"SELECT custos.chain_verify($1, $2::jsonb)"},
	/* GET /v1/digest */
	[STMT_CHAIN_DIGEST] = {"chain_digest",
	"SELECT custos.chain_digest($1)"},
	/* PUT /v1/tenants/{tenant}/privacy-mode */
	[STMT_PRIVACY_MODE] = {"privacy_mode",
	"SELECT custos.put_privacy_mode($1, $2::jsonb)"},
	/* POST /v1/grants: the grant and its id for Location */
	[STMT_GRANT_CREATE] = {"grant_create",
	"SELECT r, r OPERATOR(pg_catalog.->>) 'id' FROM custos.create_grant($1::jsonb) AS r"},
	/* DELETE /v1/grants/{id} */
	[STMT_GRANT_DELETE] = {"grant_delete",
	"SELECT custos.delete_grant($1::bigint)"},
	/* POST /v1/tokens: the token and its id for Location */
	[STMT_TOKEN_CREATE] = {"token_create",
	"SELECT r, r OPERATOR(pg_catalog.->>) 'token_id' FROM custos.create_token($1::jsonb) AS r"},
	/* DELETE /v1/tokens/{id} */
	[STMT_TOKEN_DELETE] = {"token_delete",
	"SELECT custos.delete_token($1)"},
	/* GET /v1/access-info */
	[STMT_ACCESS_INFO] = {"access_info",
	"SELECT custos.describe_access()"},
	/* GET /v1/subjects/{subject}/report (JSON): the report and its audit event */
	[STMT_SUBJECT_REPORT] = {"subject_report",
	"SELECT custos.subject_report($1, $2, $3::boolean, $4)"},
	/* GET /v1/subjects/{subject}/report (CSV), 1st transaction: the audit event */
	[STMT_SUBJECT_REPORT_START] = {"subject_report_start",
	"SELECT custos.subject_report_start($1, $2, $3::boolean, $4)"},
	/* GET /v1/subjects/{subject}/report (CSV), 2nd: checks and keeps the report id for the COPY */
	[STMT_SUBJECT_REPORT_PREPARE] = {"subject_report_prepare",
	"SELECT custos.subject_report_prepare($1::bigint)"},
	/* GET /v1/support/report */
	[STMT_SUPPORT_REPORT] = {"support_report",
	"SELECT custos.support_report($1::boolean, $2, $3)"},
	/* GET /v1/tenants/{tenant}/retention */
	[STMT_RETENTION_GET] = {"retention_get",
	"SELECT custos.get_retention_policy($1)"},
	/* PUT /v1/tenants/{tenant}/retention */
	[STMT_RETENTION_PUT] = {"retention_put",
	"SELECT custos.put_retention_policy($1, $2::jsonb)"},
	/* GET /v1/tenants/{tenant}/legal-holds */
	[STMT_HOLDS_LIST] = {"holds_list",
	"SELECT custos.list_legal_holds($1)"},
	/* POST /v1/tenants/{tenant}/legal-holds: the hold and its id for Location */
	[STMT_HOLD_CREATE] = {"hold_create",
		"SELECT r, r OPERATOR(pg_catalog.->>) 'hold_id' "
	"FROM custos.create_legal_hold($1, $2::jsonb) AS r"},
	/* DELETE /v1/legal-holds/{id} */
	[STMT_HOLD_DELETE] = {"hold_delete",
	"SELECT custos.delete_legal_hold($1::bigint, $2::jsonb)"},
	/* POST /v1/tenants/{tenant}/erasures */
	[STMT_ERASURE_CREATE] = {"erasure_create",
	"SELECT custos.create_erasure($1, $2::jsonb)"},
	/* GET /readyz: the database answers */
	[STMT_READY] = {"ready",
	"SELECT 1"},
};

/* GET /v1/events/export: the transaction around the COPY */
static const char *const export_begin_sql =
"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
static const char *const export_timeout_name = "export_timeout";
static const char *const export_timeout_sql =
"SELECT pg_catalog.set_config('statement_timeout', $1, true)";

/*
 * GET /v1/events/export: COPY takes no parameters, so the filters travel in
 * the transaction-local setting custos.export_prepare() has just set.  They
 * are parsed once, in the one-row subquery, whose column the inlined
 * export function reads for every row.
 */
static const char *const export_copy_csv =
"COPY (SELECT x.* FROM (SELECT custos.parse_filters("
"pg_catalog.current_setting('custos_export.filters')::jsonb) AS f OFFSET 0) p, "
"LATERAL custos.export_rows(p.f) x) "
"TO STDOUT WITH (FORMAT csv, HEADER)";
/* json text holds no control characters: with these, COPY writes it verbatim */
static const char *const export_copy_ndjson =
"COPY (SELECT x.* FROM (SELECT custos.parse_filters("
"pg_catalog.current_setting('custos_export.filters')::jsonb) AS f OFFSET 0) p, "
"LATERAL custos.export_rows_json(p.f) x) "
"TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')";

/*
 * GET /v1/subjects/{subject}/report?format=csv: the rows of the report that
 * custos.subject_report_prepare() has checked and kept in custos_report.id.
 */
static const char *const subject_report_copy_csv =
"COPY (SELECT * FROM custos.subject_report_csv("
"pg_catalog.current_setting('custos_report.id')::pg_catalog.int8)) "
"TO STDOUT WITH (FORMAT csv, HEADER)";

typedef struct PoolConn
{
	PGconn	   *conn;
	bool		in_use;
} PoolConn;

static PoolConn *slots;
static int	n_in_use;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond;
static long long last_connect_failure_us;

#define RECONNECT_BACKOFF_US 1000000

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------
 */

static bool
exec_ok(PGconn *c, const char *sql)
{
	PGresult   *res = PQexec(c, sql);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		gw_log(LOG_ERROR, NULL, "msg=\"session setup failed\" error=\"%s\"",
			   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
			   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "connection lost");
	PQclear(res);
	return ok;
}

static bool
prepare_one(PGconn *c, const char *name, const char *sql)
{
	PGresult   *res = PQprepare(c, name, sql, 0, NULL);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		gw_log(LOG_ERROR, NULL, "msg=\"cannot prepare statement\" statement=%s sqlstate=%s error=\"%s\"%s",
			   name, state ? state : "-",
			   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
			   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "connection lost",
			   state && strcmp(state, "42883") == 0 ?
			   " hint=\"the database needs the gateway's SQL API: ALTER EXTENSION custos UPDATE TO '0.3'\"" : "");
	}
	PQclear(res);
	return ok;
}

/* A new session, set up and with every statement prepared; NULL on failure. */
static PGconn *
connect_one(void)
{
	/* ours first: a setting in --db overrides them */
	const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
	const char *vals[] = {"5", "custos-gateway", config.db, NULL};
	PGconn	   *c = PQconnectdbParams(keys, vals, 1);
	char		sql[128];
	int			i;

	if (c == NULL || PQstatus(c) != CONNECTION_OK)
	{
		char		msg[256];
		size_t		n;

		snprintf(msg, sizeof(msg), "%s", c ? PQerrorMessage(c) : "out of memory");
		for (n = 0; msg[n]; n++)
			if (msg[n] == '\n' || msg[n] == '"')
				msg[n] = ' ';
		gw_log(LOG_WARN, NULL, "msg=\"cannot connect to the database\" error=\"%s\"", msg);
		PQfinish(c);
		metrics_db_connect(false);
		return NULL;
	}
	snprintf(sql, sizeof(sql), "SET statement_timeout = %d", config.statement_timeout_ms);
	/*
	 * jit off: custos' read-audit marker is costed high on purpose, which
	 * pushes every read of the log over jit_above_cost, and compiling costs
	 * far more than these short queries.
	 */
	if (!exec_ok(c, "SET search_path = pg_catalog, pg_temp") || !exec_ok(c, "SET jit = off") ||
		!exec_ok(c, sql) ||
		!prepare_one(c, auth_name, auth_sql) ||
		!prepare_one(c, export_timeout_name, export_timeout_sql))
		goto fail;
	for (i = 0; i < N_STATEMENTS; i++)
		if (!prepare_one(c, statements[i].name, statements[i].sql))
			goto fail;
	metrics_db_connect(true);
	return c;

fail:
	PQfinish(c);
	metrics_db_connect(false);
	return NULL;
}

/*
 * Is an idle connection still usable?  Anything readable on an idle
 * connection is the server saying something unasked: usually that it is
 * closing (a restart or pg_terminate_backend()).
 */
static bool
conn_alive(PGconn *c)
{
	struct pollfd p;

	if (PQstatus(c) != CONNECTION_OK)
		return false;
	p.fd = PQsocket(c);
	p.events = POLLIN;
	p.revents = 0;
	if (poll(&p, 1, 0) <= 0)
		return true;
	if (!PQconsumeInput(c))
		return false;
	for (PGnotify *n; (n = PQnotifies(c)) != NULL;)
		PQfreemem(n);
	return PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE;
}

bool
db_init(void)
{
	pthread_condattr_t ca;
	PGconn	   *c;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pool_cond, &ca);
	pthread_condattr_destroy(&ca);
	slots = calloc(config.pool, sizeof(PoolConn));
	if (slots == NULL)
		return false;
	/* one connection now: a wrong --db shows in the log at once */
	c = connect_one();
	if (c)
		slots[0].conn = c;
	else
	{
		last_connect_failure_us = now_us();
		gw_log(LOG_WARN, NULL, "msg=\"starting without a database connection; /readyz answers 503 until one works\"");
	}
	return true;
}

void
db_shutdown(void)
{
	int			i;

	pthread_mutex_lock(&pool_lock);
	for (i = 0; i < config.pool; i++)
		if (!slots[i].in_use && slots[i].conn)
		{
			PQfinish(slots[i].conn);
			slots[i].conn = NULL;
		}
	pthread_mutex_unlock(&pool_lock);
}

void
db_stats(DbStats *stats)
{
	int			i;

	pthread_mutex_lock(&pool_lock);
	stats->size = config.pool;
	stats->in_use = n_in_use;
	stats->connected = 0;
	for (i = 0; i < config.pool; i++)
		if (slots[i].conn)
			stats->connected++;
	pthread_mutex_unlock(&pool_lock);
}

/*
 * Takes a slot with a working connection.  On failure sets call->status
 * (DB_BUSY or DB_UNAVAILABLE) and returns NULL.
 */
static PoolConn *
pool_acquire(DbCall *call)
{
	PoolConn   *pc = NULL;
	struct timespec deadline;
	int			i;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += config.pool_wait_ms / 1000;
	deadline.tv_nsec += (long) (config.pool_wait_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}

	pthread_mutex_lock(&pool_lock);
	for (;;)
	{
		/* prefer a slot that is connected */
		for (i = 0; i < config.pool; i++)
			if (!slots[i].in_use && slots[i].conn)
			{
				pc = &slots[i];
				break;
			}
		if (pc == NULL)
			for (i = 0; i < config.pool; i++)
				if (!slots[i].in_use)
				{
					pc = &slots[i];
					break;
				}
		if (pc)
			break;
		if (pthread_cond_timedwait(&pool_cond, &pool_lock, &deadline) == ETIMEDOUT)
		{
			pthread_mutex_unlock(&pool_lock);
			metrics_pool_exhausted();
			call->status = DB_BUSY;
			return NULL;
		}
	}
	pc->in_use = true;
	n_in_use++;
	pthread_mutex_unlock(&pool_lock);

	if (pc->conn && !conn_alive(pc->conn))
	{
		gw_log(LOG_INFO, call->request_id, "msg=\"dropping a broken database connection\"");
		PQfinish(pc->conn);
		pc->conn = NULL;
	}
	if (pc->conn == NULL)
	{
		bool		backoff;

		pthread_mutex_lock(&pool_lock);
		backoff = last_connect_failure_us && now_us() - last_connect_failure_us < RECONNECT_BACKOFF_US;
		pthread_mutex_unlock(&pool_lock);
		if (!backoff)
			pc->conn = connect_one();
		if (pc->conn == NULL)
		{
			pthread_mutex_lock(&pool_lock);
			if (!backoff)
				last_connect_failure_us = now_us();
			pc->in_use = false;
			n_in_use--;
			pthread_cond_signal(&pool_cond);
			pthread_mutex_unlock(&pool_lock);
			call->status = DB_UNAVAILABLE;
			return NULL;
		}
		pthread_mutex_lock(&pool_lock);
		last_connect_failure_us = 0;
		pthread_mutex_unlock(&pool_lock);
	}
	return pc;
}

/* Gives a slot back; a connection that is not clean and idle is closed. */
static void
pool_release(PoolConn *pc)
{
	if (pc->conn && (PQstatus(pc->conn) != CONNECTION_OK ||
					 PQtransactionStatus(pc->conn) != PQTRANS_IDLE ||
					 PQpipelineStatus(pc->conn) != PQ_PIPELINE_OFF))
	{
		PQfinish(pc->conn);
		pc->conn = NULL;
	}
	pthread_mutex_lock(&pool_lock);
	pc->in_use = false;
	n_in_use--;
	pthread_cond_signal(&pool_cond);
	pthread_mutex_unlock(&pool_lock);
}

/* ------------------------------------------------------------------------
 * Calls
 * ------------------------------------------------------------------------
 */

typedef enum Outcome
{
	OUT_OK,
	OUT_SQL_ERROR,
	OUT_LOST_BEFORE_SEND,		/* nothing reached the server */
	OUT_LOST					/* the connection broke; what ran is unknown */
} Outcome;

static void
copy_field(char *dst, size_t size, const PGresult *res, int field)
{
	const char *v = PQresultErrorField(res, field);

	snprintf(dst, size, "%s", v ? v : "");
}

/* Keeps the first error of a call. */
static void
note_error(DbCall *call, const PGresult *res)
{
	if (call->sqlstate[0])
		return;
	copy_field(call->sqlstate, sizeof(call->sqlstate), res, PG_DIAG_SQLSTATE);
	copy_field(call->message, sizeof(call->message), res, PG_DIAG_MESSAGE_PRIMARY);
	copy_field(call->detail, sizeof(call->detail), res, PG_DIAG_MESSAGE_DETAIL);
	copy_field(call->hint, sizeof(call->hint), res, PG_DIAG_MESSAGE_HINT);
}

/*
 * Reads the results of one pipelined query: its result, then the NULL that
 * ends it.  Returns the TUPLES_OK result (caller clears) or NULL; errors are
 * noted in call.
 */
static PGresult *
pipeline_result(PGconn *c, DbCall *call, bool *lost)
{
	PGresult   *res = PQgetResult(c);
	PGresult   *keep = NULL;
	PGresult   *extra;

	if (res == NULL)
	{
		*lost = true;
		return NULL;
	}
	switch (PQresultStatus(res))
	{
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
			keep = res;
			break;
		case PGRES_PIPELINE_ABORTED:
			PQclear(res);
			break;
		default:
			if (PQresultErrorField(res, PG_DIAG_SQLSTATE) == NULL)
				*lost = true;	/* a libpq error: the connection */
			else
				note_error(call, res);
			PQclear(res);
			break;
	}
	if (!*lost)
		while ((extra = PQgetResult(c)) != NULL)
			PQclear(extra);
	return keep;
}

static Outcome
run_once(PGconn *c, DbCall *call)
{
	PGresult   *auth = NULL;
	PGresult   *res = NULL;
	PGresult   *sync;
	bool		lost = false;

	call->sqlstate[0] = '\0';
	if (PQenterPipelineMode(c) != 1)
		return OUT_LOST_BEFORE_SEND;
	if ((call->token && PQsendQueryPrepared(c, auth_name, 1, &call->token, NULL, NULL, 0) != 1) ||
		PQsendQueryPrepared(c, statements[call->stmt].name, call->nparams, call->values,
							NULL, NULL, 0) != 1 ||
		PQpipelineSync(c) != 1)
		return OUT_LOST_BEFORE_SEND;

	if (call->token)
	{
		auth = pipeline_result(c, call, &lost);
		if (auth && PQntuples(auth) == 1 && !PQgetisnull(auth, 0, 0))
			snprintf(call->access, sizeof(call->access), "%s", PQgetvalue(auth, 0, 0));
		PQclear(auth);
	}
	if (!lost)
		res = pipeline_result(c, call, &lost);
	if (!lost)
	{
		sync = PQgetResult(c);
		if (sync == NULL || PQresultStatus(sync) != PGRES_PIPELINE_SYNC)
			lost = true;
		PQclear(sync);
	}
	if (lost || PQexitPipelineMode(c) != 1)
	{
		PQclear(res);
		return OUT_LOST;
	}
	if (call->sqlstate[0])
	{
		PQclear(res);
		return OUT_SQL_ERROR;
	}
	call->res = res;
	return OUT_OK;
}

void
db_call(DbCall *call)
{
	int			attempt = 0;
	bool		reconnected = false;

	for (;;)
	{
		PoolConn   *pc = pool_acquire(call);
		Outcome		o;

		if (pc == NULL)
			return;
		o = run_once(pc->conn, call);
		pool_release(pc);
		switch (o)
		{
			case OUT_OK:
				call->status = DB_OK;
				return;
			case OUT_SQL_ERROR:
				metrics_db_error(call->sqlstate);
				if ((strcmp(call->sqlstate, "40001") == 0 || strcmp(call->sqlstate, "40P01") == 0) &&
					attempt < config.retries)
				{
					gw_log(LOG_INFO, call->request_id, "msg=\"retrying transaction\" sqlstate=%s attempt=%d",
						   call->sqlstate, attempt + 1);
					usleep(1000 << attempt);
					attempt++;
					continue;
				}
				call->status = DB_SQL_ERROR;
				return;
			case OUT_LOST_BEFORE_SEND:
			case OUT_LOST:
				metrics_db_error("08006");
				gw_log(LOG_WARN, call->request_id, "msg=\"database connection lost\" during=%s",
					   o == OUT_LOST ? "call" : "send");
				if (!reconnected && (o == OUT_LOST_BEFORE_SEND || call->read_only))
				{
					reconnected = true;
					continue;
				}
				call->status = DB_UNAVAILABLE;
				return;
		}
	}
}

/* ------------------------------------------------------------------------
 * Export
 * ------------------------------------------------------------------------
 */

struct ExportStream
{
	PoolConn   *pc;
	char	   *row;			/* a row not yet copied out in full */
	int			row_len;
	int			row_off;
	bool		copy_active;	/* COPY OUT still running */
	bool		done;			/* committed: the export is complete */
	bool		failed;
	char		request_id[65];
};

/*
 * Opens the transaction of a COPY and runs what precedes it, in one round
 * trip: BEGIN, the export timeout, custos.authenticate() and the prepare
 * statement with its one parameter, pipelined with a single Sync (which
 * leaves the explicit transaction open).  False on an error (noted in call)
 * or a lost connection (*lost); the caller rolls back or drops the
 * connection.
 */
static bool
copy_open(PGconn *c, DbCall *call, Statement prepare, const char *value, bool *lost)
{
	char		timeout[16];
	const char *tv = timeout;
	PGresult   *res;
	PGresult   *sync;

	snprintf(timeout, sizeof(timeout), "%d", config.export_timeout_ms);
	if (PQenterPipelineMode(c) != 1 ||
		PQsendQueryParams(c, export_begin_sql, 0, NULL, NULL, NULL, NULL, 0) != 1 ||
		PQsendQueryPrepared(c, export_timeout_name, 1, &tv, NULL, NULL, 0) != 1 ||
		PQsendQueryPrepared(c, auth_name, 1, &call->token, NULL, NULL, 0) != 1 ||
		PQsendQueryPrepared(c, statements[prepare].name, 1, &value, NULL, NULL, 0) != 1 ||
		PQpipelineSync(c) != 1)
	{
		*lost = true;
		return false;
	}
	PQclear(pipeline_result(c, call, lost));	/* BEGIN */
	if (!*lost)
		PQclear(pipeline_result(c, call, lost));	/* the timeout */
	if (!*lost)
	{
		res = pipeline_result(c, call, lost);
		if (res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
			snprintf(call->access, sizeof(call->access), "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	if (!*lost)
		PQclear(pipeline_result(c, call, lost));	/* the prepare statement */
	if (!*lost)
	{
		sync = PQgetResult(c);
		if (sync == NULL || PQresultStatus(sync) != PGRES_PIPELINE_SYNC)
			*lost = true;
		PQclear(sync);
	}
	if (*lost || PQexitPipelineMode(c) != 1)
	{
		*lost = true;
		return false;
	}
	return call->sqlstate[0] == '\0';
}

/*
 * A COPY ... TO STDOUT in one REPEATABLE READ READ ONLY transaction, opened
 * by copy_open(), then the COPY.  Errors before the first row are the
 * caller's to report.
 */
static ExportStream *
copy_begin(DbCall *call, Statement prepare, const char *value, const char *copy_sql)
{
	bool		reconnected = false;

	for (;;)
	{
		PoolConn   *pc = pool_acquire(call);
		PGconn	   *c;
		bool		lost = false;
		PGresult   *res;
		ExportStream *s;

		if (pc == NULL)
			return NULL;
		c = pc->conn;
		call->sqlstate[0] = '\0';
		if (!copy_open(c, call, prepare, value, &lost))
			goto failed;
		if (PQsendQuery(c, copy_sql) != 1)
		{
			lost = true;
			goto failed;
		}
		res = PQgetResult(c);
		if (PQresultStatus(res) != PGRES_COPY_OUT)
		{
			if (res == NULL || PQresultErrorField(res, PG_DIAG_SQLSTATE) == NULL ||
				PQstatus(c) != CONNECTION_OK)
				lost = true;
			else
				note_error(call, res);
			PQclear(res);
			if (!lost)
				while ((res = PQgetResult(c)) != NULL)
					PQclear(res);
			goto failed;
		}
		PQclear(res);

		s = calloc(1, sizeof(ExportStream));
		if (s == NULL)
		{
			lost = true;		/* leave the COPY to PQfinish() */
			goto failed;
		}
		s->pc = pc;
		s->copy_active = true;
		snprintf(s->request_id, sizeof(s->request_id), "%s", call->request_id);
		call->status = DB_OK;
		return s;

failed:
		if (lost)
		{
			PQfinish(pc->conn);
			pc->conn = NULL;
		}
		else if (PQtransactionStatus(c) != PQTRANS_IDLE)
			PQclear(PQexec(c, "ROLLBACK"));
		pool_release(pc);
		if (!lost)
		{
			metrics_db_error(call->sqlstate);
			call->status = DB_SQL_ERROR;
			return NULL;
		}
		metrics_db_error("08006");
		if (!reconnected)
		{
			reconnected = true;
			continue;
		}
		call->status = DB_UNAVAILABLE;
		return NULL;
	}
}

ExportStream *
db_export_begin(DbCall *call, const char *filters, ExportFormat format)
{
	return copy_begin(call, STMT_EXPORT_PREPARE, filters,
					  format == EXPORT_CSV ? export_copy_csv : export_copy_ndjson);
}

ExportStream *
db_subject_report_begin(DbCall *call, const char *report_id)
{
	return copy_begin(call, STMT_SUBJECT_REPORT_PREPARE, report_id, subject_report_copy_csv);
}

/* The COPY has ended: its result, then COMMIT. */
static void
export_finish(ExportStream *s)
{
	PGconn	   *c = s->pc->conn;
	PGresult   *res;

	s->copy_active = false;
	res = PQgetResult(c);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		gw_log(LOG_WARN, s->request_id, "msg=\"export failed after it started\" sqlstate=%s error=\"%s\"",
			   state ? state : "-", PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
			   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "connection lost");
		metrics_db_error(state ? state : "08006");
		s->failed = true;
	}
	PQclear(res);
	while ((res = PQgetResult(c)) != NULL)
		PQclear(res);
	if (!s->failed)
	{
		res = PQexec(c, "COMMIT");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			s->failed = true;
		PQclear(res);
	}
	s->done = !s->failed;
}

long
db_export_read(ExportStream *s, char *buf, size_t max)
{
	size_t		n = 0;

	if (s->done)
		return 0;
	if (s->failed)
		return -1;
	while (n < max)
	{
		char	   *row;
		int			len;

		if (s->row)
		{
			size_t		take = (size_t) (s->row_len - s->row_off);

			if (take > max - n)
				take = max - n;
			memcpy(buf + n, s->row + s->row_off, take);
			n += take;
			s->row_off += take;
			if (s->row_off == s->row_len)
			{
				PQfreemem(s->row);
				s->row = NULL;
			}
			continue;
		}
		if (!s->copy_active)
			break;
		/* block only while there is nothing to hand out yet */
		len = PQgetCopyData(s->pc->conn, &row, n > 0);
		if (len > 0)
		{
			s->row = row;
			s->row_len = len;
			s->row_off = 0;
		}
		else if (len == 0)
			break;
		else if (len == -1)
		{
			export_finish(s);
			break;
		}
		else
		{
			gw_log(LOG_WARN, s->request_id, "msg=\"export connection lost\"");
			s->copy_active = false;
			s->failed = true;
			break;
		}
	}
	if (n > 0)
		return (long) n;
	return s->failed ? -1 : 0;
}

void
db_export_end(ExportStream *s)
{
	PGconn	   *c = s->pc->conn;

	if (s->copy_active)
	{
		/* the client went away: stop the query, then read what is in flight */
		PGcancel   *cancel = PQgetCancel(c);
		char		err[256];
		long long	deadline = now_us() + 2000000;
		bool		ended = false;

		if (cancel == NULL || !PQcancel(cancel, err, sizeof(err)))
			gw_log(LOG_WARN, s->request_id, "msg=\"cannot cancel the export query\"");
		PQfreeCancel(cancel);
		gw_log(LOG_INFO, s->request_id, "msg=\"export cancelled: the client went away\"");
		PQsetnonblocking(c, 1);
		while (now_us() < deadline)
		{
			char	   *row;
			int			len = PQgetCopyData(c, &row, 1);

			if (len > 0)
				PQfreemem(row);
			else if (len == 0)
			{
				struct pollfd p = {PQsocket(c), POLLIN, 0};

				if (poll(&p, 1, 100) > 0 && !PQconsumeInput(c))
					break;
			}
			else
			{
				ended = len == -1;
				break;
			}
		}
		PQsetnonblocking(c, 0);
		if (ended)
		{
			PGresult   *res;

			while ((res = PQgetResult(c)) != NULL)
				PQclear(res);
			PQclear(PQexec(c, "ROLLBACK"));
		}
		else
		{
			PQfinish(c);
			s->pc->conn = NULL;
		}
	}
	else if (c && PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(PQexec(c, "ROLLBACK"));
	if (s->row)
		PQfreemem(s->row);
	pool_release(s->pc);
	free(s);
}
