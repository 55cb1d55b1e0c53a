/* A small pull parser for the JSON header of a safetensors file. The caller walks the document
 * (objects, arrays, strings, non-negative integers) and skips any other value. The text is not
 * NUL-terminated and never read past its length; every error is MAE_ERR_FORMAT with a message
 * that names the byte offset in the file. */
#ifndef MAE_JSON_H
#define MAE_JSON_H

#include <stddef.h>
#include <stdint.h>
#include "mae.h"

typedef struct mae_json {
    const char *s;      /* the text */
    size_t n;           /* its length */
    size_t pos;         /* the cursor */
    size_t base;        /* file offset of s[0], for messages */
    const char *unit;   /* what messages call an offset: "header byte" (safetensors) or "byte" */
} mae_json;

void mae_json_init(mae_json *j, const char *s, size_t n, size_t base);
/* A JSON document of its own (config.json, an index): messages say "byte N". */
void mae_json_init_text(mae_json *j, const char *s, size_t n);

/* The next character after whitespace (not consumed), or -1 at the end of the text. */
int mae_json_peek(mae_json *j);
/* File offset of the next character after whitespace. */
size_t mae_json_where(mae_json *j);

/* Consumes '{' or '['. */
mae_status mae_json_open(mae_json *j, char bracket);
/* Call before each element of the container opened with mae_json_open: consumes the ','
 * between elements, or the closing bracket, which sets *more = 0. index counts the elements
 * seen so far (0 before the first). */
mae_status mae_json_next(mae_json *j, char close, int index, int *more);
/* Consumes ':' between a key and its value. */
mae_status mae_json_colon(mae_json *j);

/* A string, decoded (escapes, \u with surrogate pairs to UTF-8). At most cap-1 bytes and a NUL
 * go to out; *len gets the full decoded length, so len >= cap means it did not fit, and
 * strlen(out) != *len means it holds a \u0000. out may be NULL (cap 0) to skip a string. */
mae_status mae_json_string(mae_json *j, char *out, size_t cap, size_t *len);
/* A non-negative integer of plain digits no larger than max. */
mae_status mae_json_uint(mae_json *j, uint64_t max, uint64_t *v);
/* Any JSON number, as the double nearest to it (locale-independent; at most 63 characters). */
mae_status mae_json_number(mae_json *j, double *v);
/* true or false. */
mae_status mae_json_bool(mae_json *j, int *v);
/* Any value (nesting limited to a fixed depth). */
mae_status mae_json_skip(mae_json *j);

#endif
