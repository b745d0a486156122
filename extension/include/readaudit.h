/*-------------------------------------------------------------------------
 *
 * readaudit.h
 *	  Recording reads of protected data (readaudit.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_READAUDIT_H
#define CUSTOS_READAUDIT_H

#include "fmgr.h"

extern void ReadAuditInstallHooks(void);

/* append.c: the SQL entry point, reused to append READ events */
extern Datum custos_log(PG_FUNCTION_ARGS);

#endif							/* CUSTOS_READAUDIT_H */
