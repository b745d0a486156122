/*-------------------------------------------------------------------------
 *
 * crypto.h
 *	  Hashing, HMAC, randomness and authenticated encryption (crypto.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_CRYPTO_H
#define CUSTOS_CRYPTO_H

#include "common/cryptohash.h"

#define CUSTOS_NONCE_LEN 12
#define CUSTOS_TAG_LEN 16

/* A SHA-256 context that can be reused for many hashes. */
typedef struct CryptoHasher
{
	pg_cryptohash_ctx *ctx;
} CryptoHasher;

extern void CryptoHasherInit(CryptoHasher *h);
extern void CryptoHasherUpdate(CryptoHasher *h, const void *data, size_t len);
extern void CryptoHasherFinal(CryptoHasher *h, uint8 *out);
extern void CryptoHasherFree(CryptoHasher *h);

extern void CryptoSha256(const void *data, size_t len, uint8 *out);
extern void CryptoHmacSha256(const uint8 *key, size_t keylen,
							 const void *data, size_t len, uint8 *out);
extern void CryptoRandom(uint8 *buf, size_t len);

extern bytea *CryptoSeal(const uint8 *key, const void *aad, size_t aadlen,
						 const void *plain, size_t plainlen);
extern char *CryptoOpen(const uint8 *key, const void *aad, size_t aadlen,
						const bytea *sealed, size_t *plainlen);

#endif							/* CUSTOS_CRYPTO_H */
