/*-------------------------------------------------------------------------
 *
 * ticket.c
 *	  Export tickets: a browser downloads an export by plain navigation.
 *
 * A page cannot put an Authorization header on a navigation, and reading
 * an export through fetch() would hold it in the page (1M rows must not).
 * So the page asks for a ticket with its token,
 *
 *	POST /v1/exports {"format": "csv", "filters": {...}}   (bearer token)
 *	  -> 201 {"href": "/v1/exports/<64 hex>", "expires_in": 60, ...}
 *
 * and navigates to href; GET /v1/exports/{ticket} needs no token and
 * streams the export exactly as GET /v1/events/export does (same SQL, same
 * snapshot rules), straight from libpq to the browser's download.
 *
 * The ticket is 256 bits from getrandom(), single use (the slot is wiped
 * when it is redeemed), lives TICKET_TTL_S seconds, and is only redeemed
 * from the client address that asked for it.  Creating one authenticates
 * the token and validates the filters in the database (so errors are
 * problems the page can show, not a broken download) and counts against
 * the token's stricter rate limit, like an export.  The ticket holds a copy
 * of the token, because custos decides per transaction who the caller is;
 * the copy lives in this process's memory only, is never logged, and is
 * wiped (explicit_bzero) when the ticket is used, or when an expired ticket
 * is swept (at the next create or download).  The path of a download is
 * logged as the route's pattern, so tickets do not reach the log either.
 *
 * The table is fixed (TICKET_SLOTS): a full table is a 503, memory does not
 * grow.  One mutex guards it; it is held only for copying a slot.
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "db.h"
#include "events.h"
#include "handler.h"
#include "main.h"
#include "ticket.h"

#define TICKET_SLOTS 64			/* tickets not yet used; bounded memory */
#define TICKET_TTL_S 60			/* from the page's click to the download */
#define TICKET_HEX 64			/* 256 bits as hex */

typedef struct Ticket
{
	bool		live;
	char		id[TICKET_HEX + 1];
	long long	expires_us;
	ExportFormat format;
	char		ip[48];
	char		token[HTTP_TOKEN_MAX + 1];
	char	   *filters;		/* JSON object text, malloc'd */
} Ticket;

static Ticket tickets[TICKET_SLOTS];
static pthread_mutex_t tickets_lock = PTHREAD_MUTEX_INITIALIZER;

/* Wipes a slot.  Caller holds tickets_lock. */
static void
ticket_clear(Ticket *t)
{
	free(t->filters);
	explicit_bzero(t, sizeof(*t));
}

/* Wipes expired slots.  Caller holds tickets_lock. */
static void
sweep(long long now)
{
	int			i;

	for (i = 0; i < TICKET_SLOTS; i++)
		if (tickets[i].live && tickets[i].expires_us <= now)
			ticket_clear(&tickets[i]);
}

/* Compares two strings of TICKET_HEX characters in constant time. */
static bool
same_ticket(const char *a, const char *b)
{
	unsigned char diff = 0;
	int			i;

	for (i = 0; i < TICKET_HEX; i++)
		diff |= (unsigned char) (a[i] ^ b[i]);
	return diff == 0;
}

static bool
valid_ticket(const char *s)
{
	return strlen(s) == TICKET_HEX && strspn(s, "0123456789abcdef") == TICKET_HEX;
}

/* POST /v1/exports */
enum MHD_Result
ticket_create(Request *r)
{
	static const char *const retry[] = {"Retry-After", "1", NULL};
	enum MHD_Result res;
	json_t	   *body;
	json_t	   *filters;
	const char *format_name;
	const char *key;
	json_t	   *value;
	ExportFormat format;
	char	   *filters_text;
	const char *token = r->token;
	DbCall		call;
	unsigned char rnd[TICKET_HEX / 2];
	char		id[TICKET_HEX + 1];
	char		location[32 + TICKET_HEX];
	char		answer[192 + TICKET_HEX];
	const char *headers[3];
	Ticket	   *slot = NULL;
	int			i;

	if (!handler_check_body(r, JSON_OBJECT, &body, &res))
		return res;
	json_object_foreach(body, key, value)
	{
		if (strcmp(key, "format") != 0 && strcmp(key, "filters") != 0)
		{
			char		msg[128];

			snprintf(msg, sizeof(msg), "unknown field \"%.64s\" in an export request", key);
			json_decref(body);
			return http_problem(r, 400, "bad-request", msg, NULL,
								"Send {\"format\": \"csv\" or \"ndjson\", \"filters\": {...}}.");
		}
	}
	format_name = json_string_value(json_object_get(body, "format"));
	if (format_name && strcmp(format_name, "csv") == 0)
		format = EXPORT_CSV;
	else if (format_name && strcmp(format_name, "ndjson") == 0)
		format = EXPORT_NDJSON;
	else
	{
		json_decref(body);
		return http_problem(r, 400, "bad-request", "\"format\" must be \"csv\" or \"ndjson\"", NULL, NULL);
	}
	filters = json_object_get(body, "filters");
	if (filters != NULL && !json_is_object(filters))
	{
		json_decref(body);
		return http_problem(r, 400, "bad-request", "\"filters\" must be an object", NULL,
							"The filters are those of GET /v1/events/export, as strings.");
	}
	filters_text = filters ? json_dumps(filters, JSON_COMPACT) : strdup("{}");
	json_decref(body);
	if (filters_text == NULL)
		return http_problem(r, 500, "internal", "cannot encode the filters", NULL, NULL);

	/* the token works and the filters are valid: custos.export_prepare() */
	handler_call_init(r, &call, STMT_EXPORT_PREPARE, true);
	call.nparams = 1;
	call.values[0] = filters_text;
	if (!handler_run(r, &call, &res))
	{
		free(filters_text);
		return res;
	}
	PQclear(call.res);

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
	{
		free(filters_text);
		return http_problem(r, 500, "internal", "no randomness for a ticket", NULL, NULL);
	}
	for (i = 0; i < (int) sizeof(rnd); i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	explicit_bzero(rnd, sizeof(rnd));

	pthread_mutex_lock(&tickets_lock);
	sweep(now_us());
	for (i = 0; i < TICKET_SLOTS && slot == NULL; i++)
		if (!tickets[i].live)
			slot = &tickets[i];
	if (slot)
	{
		slot->live = true;
		memcpy(slot->id, id, sizeof(id));
		slot->expires_us = now_us() + TICKET_TTL_S * 1000000LL;
		slot->format = format;
		snprintf(slot->ip, sizeof(slot->ip), "%s", r->ip);
		snprintf(slot->token, sizeof(slot->token), "%s", token);
		slot->filters = filters_text;
	}
	pthread_mutex_unlock(&tickets_lock);
	if (slot == NULL)
	{
		free(filters_text);
		return http_problem_headers(r, 503, "overloaded", "too many export tickets are waiting", NULL,
									"Retry later.", retry);
	}

	snprintf(location, sizeof(location), "/v1/exports/%s", id);
	snprintf(answer, sizeof(answer), "{\"href\":\"%s\",\"format\":\"%s\",\"expires_in\":%d}",
			 location, format == EXPORT_CSV ? "csv" : "ndjson", TICKET_TTL_S);
	explicit_bzero(id, sizeof(id));
	headers[0] = "Location";
	headers[1] = location;
	headers[2] = NULL;
	res = http_respond(r, 201, NULL, answer, strlen(answer), headers);
	/* libmicrohttpd holds its own copy now */
	explicit_bzero(answer, sizeof(answer));
	explicit_bzero(location, sizeof(location));
	return res;
}

/* GET /v1/exports/{ticket} */
enum MHD_Result
ticket_download(Request *r)
{
	const char *want = r->params[0];
	Ticket		t = {0};
	bool		found = false;
	enum MHD_Result res;
	int			i;

	if (valid_ticket(want))
	{
		pthread_mutex_lock(&tickets_lock);
		sweep(now_us());
		for (i = 0; i < TICKET_SLOTS; i++)
		{
			if (tickets[i].live && same_ticket(tickets[i].id, want))
			{
				/* single use: whoever asks first takes it, from anywhere */
				t = tickets[i];
				tickets[i].filters = NULL;	/* now t's */
				ticket_clear(&tickets[i]);
				found = true;
				break;
			}
		}
		pthread_mutex_unlock(&tickets_lock);
	}
	if (found && strcmp(t.ip, r->ip) != 0)
	{
		free(t.filters);
		explicit_bzero(&t, sizeof(t));
		found = false;
	}
	if (!found)
		return http_problem(r, 404, "not-found", "no such export ticket, or it was used or has expired",
							NULL, "Ask for a new one with POST /v1/exports.");
	res = events_export_run(r, t.token, t.filters, t.format);
	free(t.filters);
	explicit_bzero(&t, sizeof(t));
	return res;
}
