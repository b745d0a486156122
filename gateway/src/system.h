/*-------------------------------------------------------------------------
 *
 * system.h
 *	  Handlers about the gateway itself: /healthz, /readyz, the OpenAPI
 *	  document.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_SYSTEM_H
#define GATEWAY_SYSTEM_H

#include "http.h"

extern enum MHD_Result system_healthz(Request *r);
extern enum MHD_Result system_readyz(Request *r);
extern enum MHD_Result system_openapi(Request *r);

/* loads --openapi FILE, if given; false if it cannot be read */
extern bool system_load_openapi(void);

/* the document built in (openapi_data.c, generated from docs/openapi.yaml) */
extern const unsigned char openapi_yaml[];
extern const unsigned int openapi_yaml_len;

#endif							/* GATEWAY_SYSTEM_H */
