/*-------------------------------------------------------------------------
 *
 * privacy.h
 *	  The calling principal and what it may do (privacy.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_PRIVACY_H
#define CUSTOS_PRIVACY_H

extern bool PrivacyHasCaller(void);
extern const char *PrivacyCallerPrincipal(void);
extern const char *PrivacyCallerKind(void);
extern char *PrivacyAccess(void);
extern void PrivacyCheckAppend(bool trusted, const char *tenant, const char *actor);
extern bool PrivacyMayRead(const char *tenant);
extern bool PrivacyHasRight(const char *principal, const char *tenant,
							const char *right);

#endif							/* CUSTOS_PRIVACY_H */
