/*
 * encoding.h — base64url (RFC 4648 §5, no padding) and hex.
 *
 * confide writes every binary value in JSON and headers as base64url without
 * padding (DESIGN §4). Decoders are strict: they reject padding, characters
 * outside the alphabet, and non-canonical trailing bits, so every value has
 * exactly one encoding (no malleability of AAD-covered strings).
 */
#ifndef CONFIDE_ENCODING_H
#define CONFIDE_ENCODING_H

#include <stddef.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

/* Encoded length of n bytes (no padding, no NUL). */
size_t cf_b64url_encoded_len(size_t n);
/* Upper bound of decoded length for an encoded length. */
size_t cf_b64url_decoded_max(size_t n);

/* Append the encoding of `in` to out. */
CF_RESULT cf_b64url_encode(cf_slice in, cf_buf *out);
/* Encode into a fixed char array, NUL-terminated; fails if it does not fit. */
CF_RESULT cf_b64url_encode_str(cf_slice in, char *out, size_t outsize);
/* Strict decode; appends to out. */
CF_RESULT cf_b64url_decode(cf_slice in, cf_buf *out);
/* Strict decode into a fixed array; *out_len (may be NULL) receives the
 * length. Every decoder leaves no decoded bytes behind on failure. */
CF_RESULT cf_b64url_decode_fixed(cf_slice in, uint8_t *out, size_t outsize, size_t *out_len);

/* Plain base64 (RFC 4648 §4, padded), for PEM-adjacent formats and
 * collateral that arrives in that form. Decoding ignores nothing. */
CF_RESULT cf_b64_decode(cf_slice in, cf_buf *out);

/* Lower-case hex. */
CF_RESULT cf_hex_encode(cf_slice in, cf_buf *out);
CF_RESULT cf_hex_encode_str(cf_slice in, char *out, size_t outsize);
/* Accepts upper and lower case; rejects odd length and non-hex. */
CF_RESULT cf_hex_decode(cf_slice in, cf_buf *out);
CF_RESULT cf_hex_decode_fixed(cf_slice in, uint8_t *out, size_t outsize, size_t *out_len);

#endif /* CONFIDE_ENCODING_H */
