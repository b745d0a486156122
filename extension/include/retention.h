/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  What retention removed, as verify.c and retention.c read it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_RETENTION_H
#define CUSTOS_RETENTION_H

#include "postgres.h"

/*
 * The id ranges retention removed from one tenant (custos.retention_cut),
 * merged and sorted: a sealed event may be gone only inside one of them.
 */
typedef struct CutSet
{
	int			n;
	int64	   *lo;
	int64	   *hi;				/* exclusive */
} CutSet;

extern void RetentionLoadCuts(Datum tenant, bool read_only, CutSet *cuts);
extern bool RetentionCutContains(const CutSet *cuts, int64 id);

#endif							/* CUSTOS_RETENTION_H */
