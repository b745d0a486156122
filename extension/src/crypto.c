/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  SHA-256 and HMAC (PostgreSQL's cryptohash API, OpenSSL underneath),
 *	  strong randomness, and AES-256-GCM for personal fields (OpenSSL EVP,
 *	  which PostgreSQL's cryptohash API does not cover).
 *
 * Nothing here is hand-written cryptography.  OpenSSL cipher contexts are
 * freed before any ereport, so an error never leaks one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/hmac.h"
#include "port.h"

#include "crypto.h"
#include "custos.h"

void
CryptoHasherInit(CryptoHasher *h)
{
	if (h->ctx == NULL)
	{
		h->ctx = pg_cryptohash_create(PG_SHA256);
		if (h->ctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
	}
	if (pg_cryptohash_init(h->ctx) < 0)
		elog(ERROR, "could not initialise SHA-256: %s", pg_cryptohash_error(h->ctx));
}

void
CryptoHasherUpdate(CryptoHasher *h, const void *data, size_t len)
{
	if (pg_cryptohash_update(h->ctx, data, len) < 0)
		elog(ERROR, "could not update SHA-256: %s", pg_cryptohash_error(h->ctx));
}

void
CryptoHasherFinal(CryptoHasher *h, uint8 *out)
{
	if (pg_cryptohash_final(h->ctx, out, CUSTOS_HASH_LEN) < 0)
		elog(ERROR, "could not finish SHA-256: %s", pg_cryptohash_error(h->ctx));
}

void
CryptoHasherFree(CryptoHasher *h)
{
	if (h->ctx != NULL)
		pg_cryptohash_free(h->ctx);
	h->ctx = NULL;
}

/*
 * One-shot SHA-256 through OpenSSL's EVP_Digest: for a single short input
 * it avoids the context allocation and resource-owner bookkeeping of
 * PostgreSQL's cryptohash API (custos.authenticate() hashes every token).
 */
void
CryptoSha256(const void *data, size_t len, uint8 *out)
{
	unsigned int outlen = 0;

	if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1 ||
		outlen != CUSTOS_HASH_LEN)
		elog(ERROR, "SHA-256 failed");
}

void
CryptoHmacSha256(const uint8 *key, size_t keylen, const void *data, size_t len,
				 uint8 *out)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, data, len) < 0 ||
		pg_hmac_final(ctx, out, CUSTOS_HASH_LEN) < 0)
	{
		const char *err = pstrdup(pg_hmac_error(ctx));

		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA-256: %s", err);
	}
	pg_hmac_free(ctx);
}

/*
 * OpenSSL's RAND_bytes directly: pg_strong_random() also calls RAND_status()
 * on every use, which cost a third of an append's cryptography.
 */
void
CryptoRandom(uint8 *buf, size_t len)
{
	if (RAND_bytes(buf, (int) len) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
}

/*
 * Encrypt with AES-256-GCM under a fresh random 96-bit nonce.  The result,
 * allocated in the current context, is nonce || ciphertext || tag.
 */
bytea *
CryptoSeal(const uint8 *key, const void *aad, size_t aadlen,
		   const void *plain, size_t plainlen)
{
	bytea	   *result;
	uint8	   *p;
	EVP_CIPHER_CTX *ctx;
	int			outl;
	bool		ok;

	result = palloc(VARHDRSZ + CUSTOS_NONCE_LEN + plainlen + CUSTOS_TAG_LEN);
	SET_VARSIZE(result, VARHDRSZ + CUSTOS_NONCE_LEN + plainlen + CUSTOS_TAG_LEN);
	p = (uint8 *) VARDATA(result);
	CryptoRandom(p, CUSTOS_NONCE_LEN);

	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, p) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int) aadlen) == 1 &&
		EVP_EncryptUpdate(ctx, p + CUSTOS_NONCE_LEN, &outl, plain, (int) plainlen) == 1 &&
		EVP_EncryptFinal_ex(ctx, p + CUSTOS_NONCE_LEN + outl, &outl) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CUSTOS_TAG_LEN,
							p + CUSTOS_NONCE_LEN + plainlen) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		elog(ERROR, "AES-256-GCM encryption failed");
	return result;
}

/*
 * Decrypt what CryptoSeal produced.  Returns NULL when the tag does not
 * match (wrong key or altered bytes): the caller decides whether that is an
 * error; custos.verify() reports altered bytes in any case.
 */
char *
CryptoOpen(const uint8 *key, const void *aad, size_t aadlen,
		   const bytea *sealed, size_t *plainlen)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(sealed);
	size_t		len = VARSIZE_ANY_EXHDR(sealed);
	size_t		clen;
	char	   *plain;
	EVP_CIPHER_CTX *ctx;
	int			outl;
	bool		ok;

	if (len < CUSTOS_NONCE_LEN + CUSTOS_TAG_LEN)
		return NULL;
	clen = len - CUSTOS_NONCE_LEN - CUSTOS_TAG_LEN;
	plain = palloc(clen + 1);

	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, p) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int) aadlen) == 1 &&
		EVP_DecryptUpdate(ctx, (uint8 *) plain, &outl, p + CUSTOS_NONCE_LEN, (int) clen) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CUSTOS_TAG_LEN,
							(void *) (p + CUSTOS_NONCE_LEN + clen)) == 1 &&
		EVP_DecryptFinal_ex(ctx, (uint8 *) plain + outl, &outl) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
	{
		pfree(plain);
		return NULL;
	}
	plain[clen] = '\0';
	*plainlen = clen;
	return plain;
}
