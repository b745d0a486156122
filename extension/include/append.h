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

/* An event custos records itself; NULL fields are absent (see append.c). */
typedef struct AppendRecord
{
	const char *tenant;
	const char *actor;			/* NULL: the caller's principal or role */
	const char *category;
	const char *action;
	const char *resource_type;
	const char *resource_id;
	const char *resource_name;
	const char *target_level;
	const char *target_name;
	const char *description;
	const char *subject;		/* NULL: the event is about no data subject */
	Jsonb	   *previous_state;
	Jsonb	   *new_state;
	Jsonb	   *metadata;
} AppendRecord;

extern int64 AppendRecordEvent(const AppendRecord *rec);

#endif							/* CUSTOS_APPEND_H */
