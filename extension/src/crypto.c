/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  SHA-256 and HMAC (PostgreSQL's cryptohash API, OpenSSL underneath),
 *	  strong randomness, and AES-256-GCM for personal fields (OpenSSL EVP,
 *	  which PostgreSQL's cryptohash API does not cover).
 *
 * Nothing here is hand-written cryptography.
 *
 * Every append derives a key (HMAC), draws a nonce and encrypts (AES-GCM):
 * small inputs, where OpenSSL 3's per-call costs dominate: an implicit
 * algorithm fetch (a locked lookup by name) for EVP_aes_256_gcm() and for
 * HMAC_Init_ex(), a context allocation, a DRBG call per nonce.  So each
 * backend fetches the algorithms once and keeps one HMAC context and one
 * cipher context per direction, re-keyed for every use, and draws nonces in
 * batches.  They live as long as the backend (OpenSSL allocates them, not
 * palloc); on error a context is simply re-initialised by its next use.
 * The key schedule left in them is no more exposure than the per-backend
 * key cache (keys.c) that holds the same keys.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* EVP_MAC, OSSL_PARAM and EVP_CipherInit_ex2() below; Debian 12 ships 3.0 */
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "custos needs OpenSSL 3.0 or later"
#endif

#include "port.h"

#include "crypto.h"
#include "custos.h"

/* fetched or made on first use, kept for the backend's life */
static EVP_MD *sha256_md;
static EVP_MAC_CTX *hmac_ctx;
static EVP_CIPHER *aes_gcm;
static EVP_CIPHER_CTX *seal_ctx;
static EVP_CIPHER_CTX *open_ctx;

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

static void
crypto_unavailable(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("OpenSSL cannot provide %s", what),
			 errhint("Check the OpenSSL configuration (OPENSSL_CONF) of the server.")));
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

	if (sha256_md == NULL && (sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		crypto_unavailable("SHA-256");
	if (EVP_Digest(data, len, out, &outlen, sha256_md, NULL) != 1 ||
		outlen != CUSTOS_HASH_LEN)
		elog(ERROR, "SHA-256 failed");
}

void
CryptoHmacSha256(const uint8 *key, size_t keylen, const void *data, size_t len,
				 uint8 *out)
{
	size_t		outlen = 0;

	if (hmac_ctx == NULL)
	{
		EVP_MAC    *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		OSSL_PARAM	params[2];

		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
		params[1] = OSSL_PARAM_construct_end();
		hmac_ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
		EVP_MAC_free(mac);		/* the context keeps its own reference */
		if (hmac_ctx == NULL || EVP_MAC_CTX_set_params(hmac_ctx, params) != 1)
		{
			EVP_MAC_CTX_free(hmac_ctx);
			hmac_ctx = NULL;
			crypto_unavailable("HMAC-SHA-256");
		}
	}
	/* a new key re-initialises the context, whatever an earlier call left */
	if (EVP_MAC_init(hmac_ctx, key, keylen, NULL) != 1 ||
		EVP_MAC_update(hmac_ctx, data, len) != 1 ||
		EVP_MAC_final(hmac_ctx, out, &outlen, CUSTOS_HASH_LEN) != 1 ||
		outlen != CUSTOS_HASH_LEN)
		elog(ERROR, "could not compute HMAC-SHA-256");
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
 * Nonces, drawn from the DRBG 64 at a time: the call's fixed cost was most
 * of a 12-byte draw.  Each nonce is handed out once and the pool lives in
 * backend memory only: the postmaster never draws, so no forked process
 * starts with another's nonces.
 */
#define NONCE_POOL 64

static void
next_nonce(uint8 *out)
{
	static uint8 pool[NONCE_POOL * CUSTOS_NONCE_LEN];
	static int	left = 0;

	if (left == 0)
	{
		CryptoRandom(pool, sizeof(pool));
		left = NONCE_POOL;
	}
	left--;
	memcpy(out, pool + left * CUSTOS_NONCE_LEN, CUSTOS_NONCE_LEN);
	/* a nonce handed out is not kept */
	memset(pool + left * CUSTOS_NONCE_LEN, 0, CUSTOS_NONCE_LEN);
}

/*
 * The backend's AES-256-GCM context for one direction.  The first use sets
 * the cipher; later ones pass NULL, which keeps it and only changes key and
 * nonce.
 */
static EVP_CIPHER_CTX *
gcm_context(EVP_CIPHER_CTX **ctxp, const EVP_CIPHER **cipher)
{
	if (aes_gcm == NULL && (aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)) == NULL)
		crypto_unavailable("AES-256-GCM");
	*cipher = NULL;
	if (*ctxp == NULL)
	{
		if ((*ctxp = EVP_CIPHER_CTX_new()) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		*cipher = aes_gcm;
	}
	return *ctxp;
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
	const EVP_CIPHER *cipher;
	int			outl;
	bool		ok;

	result = palloc(VARHDRSZ + CUSTOS_NONCE_LEN + plainlen + CUSTOS_TAG_LEN);
	SET_VARSIZE(result, VARHDRSZ + CUSTOS_NONCE_LEN + plainlen + CUSTOS_TAG_LEN);
	p = (uint8 *) VARDATA(result);
	next_nonce(p);

	ctx = gcm_context(&seal_ctx, &cipher);
	ok = EVP_EncryptInit_ex2(ctx, cipher, key, p, NULL) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int) aadlen) == 1 &&
		EVP_EncryptUpdate(ctx, p + CUSTOS_NONCE_LEN, &outl, plain, (int) plainlen) == 1 &&
		EVP_EncryptFinal_ex(ctx, p + CUSTOS_NONCE_LEN + outl, &outl) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CUSTOS_TAG_LEN,
							p + CUSTOS_NONCE_LEN + plainlen) == 1;
	if (!ok)
	{
		/* start the next use from a fresh context */
		EVP_CIPHER_CTX_free(seal_ctx);
		seal_ctx = NULL;
		elog(ERROR, "AES-256-GCM encryption failed");
	}
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
	const EVP_CIPHER *cipher;
	int			outl;
	bool		ok;

	if (len < CUSTOS_NONCE_LEN + CUSTOS_TAG_LEN)
		return NULL;
	clen = len - CUSTOS_NONCE_LEN - CUSTOS_TAG_LEN;
	plain = palloc(clen + 1);

	ctx = gcm_context(&open_ctx, &cipher);
	ok = EVP_DecryptInit_ex2(ctx, cipher, key, p, NULL) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int) aadlen) == 1 &&
		EVP_DecryptUpdate(ctx, (uint8 *) plain, &outl, p + CUSTOS_NONCE_LEN, (int) clen) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CUSTOS_TAG_LEN,
							(void *) (p + CUSTOS_NONCE_LEN + clen)) == 1 &&
		EVP_DecryptFinal_ex(ctx, (uint8 *) plain + outl, &outl) == 1;
	if (!ok)
	{
		/* a wrong key or altered bytes; the next use starts afresh */
		EVP_CIPHER_CTX_free(open_ctx);
		open_ctx = NULL;
		pfree(plain);
		return NULL;
	}
	plain[clen] = '\0';
	*plainlen = clen;
	return plain;
}
