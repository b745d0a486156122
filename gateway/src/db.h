/*-------------------------------------------------------------------------
 *
 * db.h
 *	  The pool of PostgreSQL connections and the one way handlers reach the
 *	  database: one named prepared statement per endpoint, run after
 *	  custos.authenticate() in one transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_DB_H
#define GATEWAY_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

/* The prepared statements, one per endpoint (db.c holds their SQL). */
typedef enum Statement
{
	STMT_EVENTS_APPEND,
	STMT_EVENTS_LIST,
	STMT_EVENTS_GET,
	STMT_EXPORT_PREPARE,
	STMT_CHAIN_VERIFY,
	STMT_CHAIN_DIGEST,
	STMT_PRIVACY_MODE,
	STMT_GRANT_CREATE,
	STMT_GRANT_DELETE,
	STMT_TOKEN_CREATE,
	STMT_TOKEN_DELETE,
	STMT_ACCESS_INFO,
	STMT_SUBJECT_REPORT,
	STMT_SUBJECT_REPORT_START,
	STMT_SUBJECT_REPORT_PREPARE,
	STMT_SUPPORT_REPORT,
	STMT_RETENTION_GET,
	STMT_RETENTION_PUT,
	STMT_HOLDS_LIST,
	STMT_HOLD_CREATE,
	STMT_HOLD_DELETE,
	STMT_ERASURE_CREATE,
	STMT_READY,
	N_STATEMENTS
} Statement;

typedef enum DbStatus
{
	DB_OK,						/* res holds the statement's rows */
	DB_SQL_ERROR,				/* sqlstate, message, detail, hint are set */
	DB_UNAVAILABLE,				/* no connection could be made or it broke */
	DB_BUSY						/* every pooled connection was in use */
} DbStatus;

#define DB_MAX_PARAMS 4

typedef struct DbCall
{
	/* in */
	const char *token;			/* NULL: no custos.authenticate() (readyz) */
	Statement	stmt;
	int			nparams;
	const char *values[DB_MAX_PARAMS];	/* NULL is SQL NULL */
	bool		read_only;		/* safe to run again on a fresh connection */
	const char *request_id;		/* for log lines */

	/* out */
	DbStatus	status;
	PGresult   *res;			/* DB_OK: caller PQclear()s */
	char		sqlstate[6];
	char		message[512];
	char		detail[512];
	char		hint[512];
	char		access[64];		/* the token id custos.authenticate() returned */
} DbCall;

extern bool db_init(void);
extern void db_shutdown(void);

/* Runs one call; never blocks longer than the pool wait plus the statement. */
extern void db_call(DbCall *call);

/* pool counters for /metrics */
typedef struct DbStats
{
	int			size;
	int			in_use;
	int			connected;
} DbStats;
extern void db_stats(DbStats *stats);

/*
 * Export: COPY ... TO STDOUT in one REPEATABLE READ READ ONLY transaction,
 * holding a pooled connection until db_export_end().
 */
typedef enum ExportFormat
{
	EXPORT_CSV,
	EXPORT_NDJSON
} ExportFormat;

typedef struct ExportStream ExportStream;

/* On success returns a stream and sets call->status = DB_OK. */
extern ExportStream *db_export_begin(DbCall *call, const char *filters, ExportFormat format);

/*
 * GET /v1/subjects/{subject}/report?format=csv: the rows of a subject access
 * report already started (and committed) as report_id, streamed like an
 * export (custos.subject_report_prepare(), then COPY of
 * custos.subject_report_csv()).  Read and end it with db_export_read() and
 * db_export_end().
 */
extern ExportStream *db_subject_report_begin(DbCall *call, const char *report_id);

/*
 * Copies up to max bytes of the export into buf.  Returns the number of
 * bytes (> 0), 0 at the end of the export, -1 on an error (logged).
 * Blocks until at least one row is there.
 */
extern long db_export_read(ExportStream *s, char *buf, size_t max);

/* Ends the export: commits if complete, else cancels the query (PQcancel). */
extern void db_export_end(ExportStream *s);

#endif							/* GATEWAY_DB_H */
