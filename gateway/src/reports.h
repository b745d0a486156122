/*-------------------------------------------------------------------------
 *
 * reports.h
 *	  Handlers of the subject access report and the support report.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GATEWAY_REPORTS_H
#define GATEWAY_REPORTS_H

#include "http.h"

extern enum MHD_Result subject_report(Request *r);
extern enum MHD_Result support_report(Request *r);

#endif							/* GATEWAY_REPORTS_H */
