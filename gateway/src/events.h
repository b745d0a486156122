/*-------------------------------------------------------------------------
 *
 * events.h
 *	  Handlers of /v1/events: append, list, get, export.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_EVENTS_H
#define GATEWAY_EVENTS_H

#include "http.h"

extern enum MHD_Result events_append(Request *r);
extern enum MHD_Result events_list(Request *r);
extern enum MHD_Result events_get(Request *r);
extern enum MHD_Result events_export(Request *r);

#endif							/* GATEWAY_EVENTS_H */
