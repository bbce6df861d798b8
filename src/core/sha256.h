/* sha256.h - SHA-256 (FIPS 180-4) of a buffer, for provenance records. */
#ifndef WK_SHA256_H
#define WK_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* The digest of data[0, n_bytes) as 64 lowercase hex digits and a NUL. */
void wk_sha256_hex(const void *data, size_t n_bytes, char hex[65]);

#endif
