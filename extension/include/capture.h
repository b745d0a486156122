/*-------------------------------------------------------------------------
 *
 * capture.h
 *	  Recording writes of tracked tables (capture.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_CAPTURE_H
#define CUSTOS_CAPTURE_H

#include "utils/guc.h"

/* custos.capture_deny_columns (custos.c defines the GUC) */
extern char *custos_capture_deny_columns;
extern bool CaptureDenyColumnsCheck(char **newval, void **extra, GucSource source);
extern void CaptureDenyColumnsAssign(const char *newval, void *extra);

#endif							/* CUSTOS_CAPTURE_H */
