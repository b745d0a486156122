/*-------------------------------------------------------------------------
 *
 * chain.h
 *	  Handlers of /v1/verify and /v1/digest.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_CHAIN_H
#define GATEWAY_CHAIN_H

#include "http.h"

extern enum MHD_Result chain_verify(Request *r);
extern enum MHD_Result chain_digest(Request *r);

#endif							/* GATEWAY_CHAIN_H */
