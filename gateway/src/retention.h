/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  Handlers of retention policies, legal holds and erasure.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_RETENTION_H
#define GATEWAY_RETENTION_H

#include "http.h"

extern enum MHD_Result retention_get(Request *r);
extern enum MHD_Result retention_put(Request *r);
extern enum MHD_Result legal_holds_list(Request *r);
extern enum MHD_Result legal_holds_create(Request *r);
extern enum MHD_Result legal_holds_delete(Request *r);
extern enum MHD_Result erasures_create(Request *r);

#endif							/* GATEWAY_RETENTION_H */
