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

#include "storage/latch.h"

extern void ReadAuditInstallHooks(void);
extern Size ReadAuditShmemSize(void);
extern void ReadAuditShmemInit(void);
extern void ReadAuditSetSealerLatch(Latch *latch);
extern int64 ReadAuditDrain(void);

#endif							/* CUSTOS_READAUDIT_H */
