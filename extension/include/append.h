/*-------------------------------------------------------------------------
 *
 * append.h
 *	  Appending events from C (append.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_APPEND_H
#define CUSTOS_APPEND_H

#include "utils/jsonb.h"

extern int64 AppendOne(Jsonb *event, const char *access_override);

#endif							/* CUSTOS_APPEND_H */
