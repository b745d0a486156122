/*-------------------------------------------------------------------------
 *
 * guard.h
 *	  Immutability of custos storage (guard.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_GUARD_H
#define CUSTOS_GUARD_H

#include "tcop/utility.h"

/*
 * Run "stmt" with custos' own privileges and its storage guard lifted.
 * Callers bracket SPI work on storage with GuardBeginInternal() and
 * GuardEndInternal(&state) in PG_TRY/PG_FINALLY.
 */
typedef struct GuardState
{
	Oid			save_userid;
	int			save_sec_context;
} GuardState;

extern void GuardBeginInternal(GuardState *state);
extern void GuardEndInternal(GuardState *state);
extern bool GuardInternalActive(void);

extern void custos_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								  bool readOnlyTree, ProcessUtilityContext context,
								  ParamListInfo params, QueryEnvironment *queryEnv,
								  DestReceiver *dest, QueryCompletion *qc);
extern ProcessUtility_hook_type prev_ProcessUtility;

#endif							/* CUSTOS_GUARD_H */
