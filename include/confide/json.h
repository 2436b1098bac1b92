/*
 * json.h — the strict wire-level JSON scanner (RFC 8259) of protocol v1.
 *
 * What it is for. The field codec (DESIGN §4.4) must find the top-level
 * members of a request or response body, take each member's value exactly as
 * received (byte for byte: numbers, escapes and inner whitespace preserved)
 * and splice ciphertext strings back in. This scanner does that without ever
 * building a DOM and without re-serialising anything: it reports byte spans
 * into the caller's input. jansson stays in use for config, manifests and API
 * bodies; it is not used on the wire because it re-serialises.
 *
 * Normative parsing rules (docs/protocol.md refers here):
 *
 *  R1  Grammar: exactly RFC 8259 §2-§7. Rejected: trailing commas, leading
 *      zeros ("01", "-01"), "+1", ".5", "1.", "1e", hex, NaN/Infinity,
 *      comments, single quotes, unquoted names, literals other than the
 *      lower-case `true` / `false` / `null`, anything after the one top-level
 *      value except whitespace.
 *  R2  Whitespace between tokens is only ' ', '\t', '\n', '\r' (§2). A UTF-8
 *      byte order mark is NOT skipped (§8.1 forbids senders to add one; we
 *      reject it rather than guess).
 *  R3  Any top-level value is valid for cf_json_validate() (§2); the object
 *      API (cf_json_object_parse) additionally requires the top-level value
 *      to be an object.
 *  R4  Strings: raw bytes must be well-formed UTF-8 per Unicode 15 Table 3-7
 *      (no overlong forms, no encoded surrogates U+D800..U+DFFF, nothing
 *      above U+10FFFF, no truncated sequences, no lone continuation bytes).
 *      Control characters U+0000..U+001F must be escaped (§7); U+007F and
 *      noncharacters such as U+FFFF are allowed. Escapes: \" \\ \/ \b \f \n
 *      \r \t and \uXXXX (hex digits in either case).
 *  R5  Surrogates in \u escapes: a high surrogate \uD800-\uDBFF must be
 *      followed immediately by a low surrogate escape \uDC00-\uDFFF, and a
 *      low surrogate may only appear as the second half of such a pair.
 *      Lone or inverted surrogates are REJECTED. RFC 8259 §8.2 leaves their
 *      meaning undefined; peers then disagree (U+FFFD, error, raw WTF-8), so
 *      two names could compare equal for one parser and differ for another.
 *      Rejecting keeps "which names are duplicates" the same for everyone.
 *  R6  Numbers are validated against the grammar only and never converted:
 *      huge exponents and 1000-digit integers are valid and kept verbatim.
 *  R7  Limits (cf_json_limits): input size (default 16 MiB, CF_E_TOO_LARGE),
 *      nesting depth of arrays+objects, the top-level container counting as
 *      depth 1 (default 64, CF_E_TOO_DEEP), number of top-level members
 *      (default 4096, CF_E_LIMIT) and the decoded length of a top-level name
 *      (default 1024 bytes, CF_E_LIMIT). The scanner is iterative: depth
 *      costs no C stack, so 100000 opening brackets fail with CF_E_TOO_DEEP.
 *  R8  Top-level members (cf_json_object_parse): names are compared by their
 *      DECODED value, so {"a":1,"\u0061":2} has a duplicate. Any duplicate
 *      top-level name fails with CF_E_DUPLICATE_KEY (DESIGN §4.4: otherwise
 *      the gateway and the inference server could read different values).
 *      A top-level name whose decoded value contains U+0000 fails with
 *      CF_E_MALFORMED: a C consumer would cut "model\u0000x" to "model" and
 *      see a duplicate that we did not. (Nested names are not checked: they
 *      travel inside ciphertext or are opaque to us.)
 *  Every other violation fails with CF_E_MALFORMED and a detail naming the
 *  problem and its byte offset (never the input's content). A failed call
 *  leaves its outputs empty.
 *
 * Typical use (the field codec):
 *
 *   cf_json_object obj;
 *   CF_GUARD(cf_json_object_parse(body, NULL, &obj));   // R1-R8, duplicates
 *   for (size_t i = 0; i < obj.count; i++) {
 *       const cf_json_member *m = obj.sorted[i];        // sorted by name
 *       ... m->name (decoded), m->value (raw bytes), m->type ...
 *   }
 *   cf_json_writer w;  ... cf_json_writer_member(&w, m->name, m->value) ...
 *   cf_json_object_free(&obj);
 *
 * Spans: every cf_slice reported by this module borrows from the caller's
 * input (except decoded names, which borrow from the cf_json_object), so the
 * input must outlive the results. A value span runs from the value's first
 * byte to its last (the quotes of a string, the brackets of a container), with
 * no surrounding whitespace; inner whitespace is part of the span.
 */
#ifndef CONFIDE_JSON_H
#define CONFIDE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/result.h"
#include "confide/slice.h"

#define CF_JSON_DEFAULT_MAX_SIZE ((size_t)16 * 1024 * 1024)
#define CF_JSON_DEFAULT_MAX_DEPTH 64u
#define CF_JSON_DEFAULT_MAX_MEMBERS ((size_t)4096)
#define CF_JSON_DEFAULT_MAX_NAME ((size_t)1024)
/* Hard ceiling for max_depth (the depth stack is a fixed bit array). */
#define CF_JSON_MAX_DEPTH_CEILING 4096u

typedef enum cf_json_type {
    CF_JSON_NULL,
    CF_JSON_FALSE,
    CF_JSON_TRUE,
    CF_JSON_NUMBER,
    CF_JSON_STRING,
    CF_JSON_ARRAY,
    CF_JSON_OBJECT,
} cf_json_type;

/* Stable lower-case name of a type ("string", "object", ...). */
const char *cf_json_type_name(cf_json_type type);

/* Limits (R7). A zero field means the default; pass NULL for all defaults.
 * max_depth above CF_JSON_MAX_DEPTH_CEILING is CF_E_INVALID_ARGUMENT. */
typedef struct cf_json_limits {
    size_t max_size;
    unsigned max_depth;
    size_t max_members;
    size_t max_name;
} cf_json_limits;

/* True for the four JSON whitespace bytes (R2). */
static inline bool cf_json_is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* `s` without leading and trailing JSON whitespace (e.g. the space padding of
 * a decrypted field value, DESIGN §4.4). Borrows from s. */
cf_slice cf_json_trim(cf_slice s);

/*
 * Validate a whole document: optional whitespace, one value, optional
 * whitespace, end (R1-R7). *type_out (may be NULL) receives the type of the
 * top-level value.
 */
CF_RESULT cf_json_validate(cf_slice doc, const cf_json_limits *limits, cf_json_type *type_out);

/* ---- Top-level object members ------------------------------------------ */

typedef struct cf_json_member {
    /* The name token as received, INCLUDING its quotes (e.g. `"mod\u0065l"`). */
    cf_slice name_raw;
    /* The decoded (unescaped, UTF-8) name, without quotes (e.g. `model`).
     * Borrows from the cf_json_object; never contains U+0000 (R8). */
    cf_slice name;
    /* The raw value bytes (see "Spans" above), and the value's type. */
    cf_slice value;
    cf_json_type type;
} cf_json_member;

typedef struct cf_json_object {
    /* Members in document order. */
    cf_json_member *members;
    size_t count;
    /* The same members sorted by decoded name: bytewise unsigned comparison,
     * a proper prefix sorting first (the order DESIGN §4.4 processes fields
     * in). Names are unique, so the order is total. */
    const cf_json_member **sorted;
    /* Private: storage for decoded names. */
    uint8_t *names_;
    size_t names_len_;
} cf_json_object;

/*
 * Validate `doc` (R1-R8), require a top-level object and collect its members.
 * Nothing is reported unless the whole document is valid and free of
 * duplicate names. On success the caller owns *out and frees it with
 * cf_json_object_free; on failure *out is empty (safe to free).
 */
CF_RESULT cf_json_object_parse(cf_slice doc, const cf_json_limits *limits, cf_json_object *out);
/* Free what cf_json_object_parse allocated; the object is empty afterwards. */
void cf_json_object_free(cf_json_object *obj);
/* The member whose decoded name equals `name` (binary search on `sorted`),
 * or NULL. */
const cf_json_member *cf_json_object_get(const cf_json_object *obj, cf_slice name);

/*
 * One-shot lookup: parse `doc` like cf_json_object_parse (so duplicates and
 * every other violation still fail) and return the raw value span and type of
 * the member named `name`. CF_E_NOT_FOUND if absent. type_out may be NULL.
 */
CF_RESULT cf_json_lookup(cf_slice doc, const cf_json_limits *limits, cf_slice name, cf_slice *value_out,
                         cf_json_type *type_out);

/* ---- Strings --------------------------------------------------------------- */

/*
 * Decode one JSON string literal `literal` (including its quotes, no
 * surrounding whitespace, rules R4/R5) and append the UTF-8 value to out.
 * The limit is out->max: a value that does not fit fails with CF_E_TOO_LARGE.
 * U+0000 (from \u0000) is allowed in values and appended as a zero byte. On
 * any failure out is restored to its previous length (appended bytes wiped).
 */
CF_RESULT cf_json_string_decode(cf_slice literal, cf_buf *out);

/*
 * Append `utf8` as a JSON string literal (with quotes) to out. The input must
 * be well-formed UTF-8 (R4), else CF_E_INVALID_ARGUMENT and nothing is
 * appended. Escaping is canonical and minimal: `"` and `\` as \" and \\,
 * U+0008/0009/000A/000C/000D as \b \t \n \f \r, other bytes below 0x20 as
 * \u00XX (lower-case hex); everything else, non-ASCII included, verbatim.
 */
CF_RESULT cf_json_string_append(cf_buf *out, cf_slice utf8);

/* ---- Object writer ----------------------------------------------------------- */

/*
 * Rebuilds an object from (name, raw value) pairs in the caller's order:
 * `{` name `:` value `,` ... `}` with no whitespace added anywhere and each
 * raw value copied byte for byte. Every raw value is validated as a JSON
 * document first (R1-R7 with default limits, its depth one less since it is
 * nested in the object; surrounding whitespace allowed and kept), so the
 * writer never emits invalid JSON, nor a value nested deeper than
 * cf_json_object_parse accepts with default limits. (Name rules R7/R8 are
 * the caller's: names taken from a parsed object already satisfy them.) It does not check names
 * for duplicates: the caller writes each name once.
 *
 *   cf_json_writer w;
 *   CF_GUARD(cf_json_writer_begin(&w, out));
 *   CF_GUARD(cf_json_writer_member(&w, name, raw_value));
 *   CF_GUARD(cf_json_writer_member_string(&w, name, ciphertext_text));
 *   CF_GUARD(cf_json_writer_end(&w));
 *
 * On any failure the writer truncates `out` back to its length at begin
 * (removed bytes wiped) and refuses further calls, so a half-written object
 * never escapes. out->max bounds the result (CF_E_TOO_LARGE).
 */
typedef struct cf_json_writer {
    cf_buf *out;
    size_t start_len;
    size_t count;
    bool failed;
    bool closed;
} cf_json_writer;

CF_RESULT cf_json_writer_begin(cf_json_writer *w, cf_buf *out);
/* `name` is the decoded name (escaped by the writer), `raw_value` raw JSON. */
CF_RESULT cf_json_writer_member(cf_json_writer *w, cf_slice name, cf_slice raw_value);
/* `name_literal` is a name token as received (cf_json_member.name_raw, with
 * quotes), copied verbatim after validation. */
CF_RESULT cf_json_writer_member_raw(cf_json_writer *w, cf_slice name_literal, cf_slice raw_value);
/* Value given as UTF-8 text, written as an escaped JSON string. */
CF_RESULT cf_json_writer_member_string(cf_json_writer *w, cf_slice name, cf_slice value_utf8);
CF_RESULT cf_json_writer_end(cf_json_writer *w);

#endif /* CONFIDE_JSON_H */
