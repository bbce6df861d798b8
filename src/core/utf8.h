/* utf8.h - strict UTF-8 validation for text that leaves or enters whisker
 * through files (tensor names, metadata, class names).
 *
 * "Strict" as in RFC 3629 and as Rust's str::from_utf8, which the reference
 * safetensors reader applies to its header: no overlong forms, no UTF-16
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence. */
#ifndef WK_UTF8_H
#define WK_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length in bytes (1..4) of the valid UTF-8 sequence at the start of s[0, n_bytes),
 * or 0 when it is not one (or n_bytes is 0). */
size_t wk_utf8_seq_bytes(const unsigned char *s, size_t n_bytes);

/* True when s[0, n_bytes) is entirely valid UTF-8. Otherwise false, and
 * *bad_offset (when not NULL) is the byte offset of the first invalid sequence. */
bool wk_utf8_valid(const char *s, size_t n_bytes, size_t *bad_offset);

#endif
