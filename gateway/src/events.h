/*-------------------------------------------------------------------------
 *
 * events.h
 *	  Handlers of /v1/events: append, list, get, export.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_EVENTS_H
#define GATEWAY_EVENTS_H

#include "db.h"
#include "http.h"

extern enum MHD_Result events_append(Request *r);
extern enum MHD_Result events_list(Request *r);
extern enum MHD_Result events_get(Request *r);
extern enum MHD_Result events_export(Request *r);

/* streams an export of filters (JSON object text) as the caller of token */
extern enum MHD_Result events_export_run(Request *r, const char *token, const char *filters,
										 ExportFormat format);

#endif							/* GATEWAY_EVENTS_H */
