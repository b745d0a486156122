/*-------------------------------------------------------------------------
 *
 * privacy.h
 *	  Handlers of privacy mode, grants, tokens and access-info.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_PRIVACY_H
#define GATEWAY_PRIVACY_H

#include "http.h"

extern enum MHD_Result privacy_mode_put(Request *r);
extern enum MHD_Result grants_create(Request *r);
extern enum MHD_Result grants_delete(Request *r);
extern enum MHD_Result tokens_create(Request *r);
extern enum MHD_Result tokens_delete(Request *r);
extern enum MHD_Result access_info(Request *r);

#endif							/* GATEWAY_PRIVACY_H */
