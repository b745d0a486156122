/*-------------------------------------------------------------------------
 *
 * ticket.h
 *	  Export tickets: POST /v1/exports hands out a short-lived, single-use
 *	  URL that downloads an export without an Authorization header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_TICKET_H
#define GATEWAY_TICKET_H

#include "http.h"

extern enum MHD_Result ticket_create(Request *r);
extern enum MHD_Result ticket_download(Request *r);

#endif							/* GATEWAY_TICKET_H */
