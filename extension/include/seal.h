/*-------------------------------------------------------------------------
 *
 * seal.h
 *	  The sealer: orders committed events into blocks (seal.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_SEAL_H
#define CUSTOS_SEAL_H

extern int64 SealPending(void);
extern void SealRegisterWorker(void);
extern PGDLLEXPORT void custos_sealer_main(Datum arg);

#endif							/* CUSTOS_SEAL_H */
