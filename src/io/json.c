/* The JSON pull parser of json.h. Strict RFC 8259 syntax; nothing beyond the given length is
 * ever read. */
#include <string.h>
#include "json.h"
#include "decimal.h"
#include "../util/util.h"

#define MAX_DEPTH 64   /* nesting that mae_json_skip follows before it gives up */

void mae_json_init(mae_json *j, const char *s, size_t n, size_t base)
{
    j->s = s;
    j->n = n;
    j->pos = 0;
    j->base = base;
    j->unit = "header byte";
}

void mae_json_init_text(mae_json *j, const char *s, size_t n)
{
    mae_json_init(j, s, n, 0);
    j->unit = "byte";
}

static void skip_ws(mae_json *j)
{
    while (j->pos < j->n) {
        char c = j->s[j->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        j->pos++;
    }
}

int mae_json_peek(mae_json *j)
{
    skip_ws(j);
    return j->pos < j->n ? (unsigned char)j->s[j->pos] : -1;
}

size_t mae_json_where(mae_json *j)
{
    skip_ws(j);
    return j->base + j->pos;
}

static mae_status expected(mae_json *j, const char *what)
{
    int c = mae_json_peek(j);
    if (c < 0)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: unexpected end of the %s, expected %s", j->unit,
                        j->base + j->pos, strcmp(j->unit, "byte") == 0 ? "text" : "header", what);
    if (c >= 0x20 && c < 0x7f)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: expected %s, found '%c'", j->unit, j->base + j->pos, what, c);
    return mae_fail(MAE_ERR_FORMAT, "%s %zu: expected %s, found byte 0x%02x", j->unit, j->base + j->pos, what, c);
}

static mae_status expect_char(mae_json *j, char c, const char *what)
{
    if (mae_json_peek(j) != (unsigned char)c)
        return expected(j, what);
    j->pos++;
    return MAE_OK;
}

mae_status mae_json_open(mae_json *j, char bracket)
{
    return expect_char(j, bracket, bracket == '{' ? "'{'" : "'['");
}

mae_status mae_json_colon(mae_json *j)
{
    return expect_char(j, ':', "':'");
}

mae_status mae_json_next(mae_json *j, char close, int index, int *more)
{
    int c = mae_json_peek(j);
    if (c == (unsigned char)close) {
        j->pos++;
        *more = 0;
        return MAE_OK;
    }
    if (index > 0) {
        mae_status s = expect_char(j, ',', close == '}' ? "',' or '}'" : "',' or ']'");
        if (s != MAE_OK)
            return s;
    }
    *more = 1;
    return MAE_OK;
}

/* ---- strings -------------------------------------------------------------------------------- */

static int hex4(const char *p, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return 0;
        x = x * 16 + d;
    }
    *v = x;
    return 1;
}

/* Appends one byte to the decoded string, as far as it fits. */
static void put(char *out, size_t cap, size_t *len, unsigned char b)
{
    if (out && *len + 1 < cap)
        out[*len] = (char)b;
    (*len)++;
}

static void put_utf8(char *out, size_t cap, size_t *len, unsigned cp)
{
    if (cp < 0x80) {
        put(out, cap, len, (unsigned char)cp);
    } else if (cp < 0x800) {
        put(out, cap, len, (unsigned char)(0xC0 | cp >> 6));
        put(out, cap, len, (unsigned char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        put(out, cap, len, (unsigned char)(0xE0 | cp >> 12));
        put(out, cap, len, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        put(out, cap, len, (unsigned char)(0x80 | (cp & 0x3F)));
    } else {
        put(out, cap, len, (unsigned char)(0xF0 | cp >> 18));
        put(out, cap, len, (unsigned char)(0x80 | (cp >> 12 & 0x3F)));
        put(out, cap, len, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        put(out, cap, len, (unsigned char)(0x80 | (cp & 0x3F)));
    }
}

/* A \u escape at j->pos (after the backslash and 'u'), with its low surrogate if it is a high
 * one: the code point, or a format error. */
static mae_status unicode_escape(mae_json *j, unsigned *cp)
{
    size_t at = j->base + j->pos - 2;
    unsigned hi, lo;
    if (j->n - j->pos < 4 || !hex4(j->s + j->pos, &hi))
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad \\u escape", j->unit, at);
    j->pos += 4;
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: lone low surrogate in \\u escape", j->unit, at);
    if (hi < 0xD800 || hi > 0xDBFF) {
        *cp = hi;
        return MAE_OK;
    }
    if (j->n - j->pos < 6 || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u' ||
        !hex4(j->s + j->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: high surrogate without its low half", j->unit, at);
    j->pos += 6;
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    return MAE_OK;
}

mae_status mae_json_string(mae_json *j, char *out, size_t cap, size_t *len)
{
    size_t start = mae_json_where(j), n = 0;
    mae_status s = expect_char(j, '"', "a string");
    if (s != MAE_OK)
        return s;
    for (;;) {
        if (j->pos >= j->n)
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: string not terminated", j->unit, start);
        unsigned char c = (unsigned char)j->s[j->pos++];
        if (c == '"')
            break;
        if (c < 0x20)
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: control character 0x%02x in a string", j->unit,
                            j->base + j->pos - 1, c);
        if (c != '\\') {
            put(out, cap, &n, c);
            continue;
        }
        if (j->pos >= j->n)
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: string not terminated", j->unit, start);
        char e = j->s[j->pos++];
        unsigned cp = 0;
        switch (e) {
        case '"': case '\\': case '/': put(out, cap, &n, (unsigned char)e); break;
        case 'b': put(out, cap, &n, '\b'); break;
        case 'f': put(out, cap, &n, '\f'); break;
        case 'n': put(out, cap, &n, '\n'); break;
        case 'r': put(out, cap, &n, '\r'); break;
        case 't': put(out, cap, &n, '\t'); break;
        case 'u':
            if ((s = unicode_escape(j, &cp)) != MAE_OK)
                return s;
            put_utf8(out, cap, &n, cp);
            break;
        default:
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad escape in a string", j->unit, j->base + j->pos - 2);
        }
    }
    if (out && cap > 0)
        out[n < cap ? n : cap - 1] = '\0';
    if (len)
        *len = n;
    return MAE_OK;
}

/* ---- numbers and other values --------------------------------------------------------------- */

static int is_digit(mae_json *j)
{
    return j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9';
}

mae_status mae_json_uint(mae_json *j, uint64_t max, uint64_t *v)
{
    size_t at = mae_json_where(j), start = j->pos;
    if (!is_digit(j))
        return expected(j, "a non-negative integer");
    uint64_t x = 0;
    while (is_digit(j)) {
        unsigned d = (unsigned)(j->s[j->pos++] - '0');
        if (d > max || x > (max - d) / 10)
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: integer larger than %llu", j->unit, at,
                            (unsigned long long)max);
        x = x * 10 + d;
    }
    if (j->s[start] == '0' && j->pos - start > 1)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: integer with a leading zero", j->unit, at);
    if (j->pos < j->n && (j->s[j->pos] == '.' || j->s[j->pos] == 'e' || j->s[j->pos] == 'E'))
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: expected an integer, found a fraction", j->unit, at);
    *v = x;
    return MAE_OK;
}

/* Any JSON number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static mae_status skip_number(mae_json *j)
{
    size_t at = j->base + j->pos;
    if (j->pos < j->n && j->s[j->pos] == '-')
        j->pos++;
    if (!is_digit(j))
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad number", j->unit, at);
    if (j->s[j->pos] == '0')
        j->pos++;
    else
        while (is_digit(j))
            j->pos++;
    if (j->pos < j->n && j->s[j->pos] == '.') {
        j->pos++;
        if (!is_digit(j))
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad number", j->unit, at);
        while (is_digit(j))
            j->pos++;
    }
    if (j->pos < j->n && (j->s[j->pos] == 'e' || j->s[j->pos] == 'E')) {
        j->pos++;
        if (j->pos < j->n && (j->s[j->pos] == '+' || j->s[j->pos] == '-'))
            j->pos++;
        if (!is_digit(j))
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad number", j->unit, at);
        while (is_digit(j))
            j->pos++;
    }
    return MAE_OK;
}

mae_status mae_json_number(mae_json *j, double *v)
{
    size_t at = mae_json_where(j), start = j->pos;
    mae_status s = skip_number(j);
    if (s != MAE_OK)
        return s;
    char buf[64];
    size_t len = j->pos - start;
    if (len >= sizeof buf)   /* more digits than any double needs: refused, not silently cut */
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: number longer than %zu characters", j->unit, at, sizeof buf - 1);
    memcpy(buf, j->s + start, len);
    buf[len] = '\0';
    if (!mae_decimal_parse(buf, v))
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad number", j->unit, at);   /* cannot happen after skip_number */
    return MAE_OK;
}

static mae_status skip_literal(mae_json *j, const char *word);

mae_status mae_json_bool(mae_json *j, int *v)
{
    int c = mae_json_peek(j);
    if (c == 't' && skip_literal(j, "true") == MAE_OK) {
        *v = 1;
        return MAE_OK;
    }
    if (c == 'f' && skip_literal(j, "false") == MAE_OK) {
        *v = 0;
        return MAE_OK;
    }
    return expected(j, "true or false");
}

static mae_status skip_literal(mae_json *j, const char *word)
{
    size_t len = strlen(word);
    if (j->n - j->pos < len || memcmp(j->s + j->pos, word, len) != 0)
        return expected(j, "a JSON value");
    j->pos += len;
    return MAE_OK;
}

static mae_status skip_value(mae_json *j, int depth)
{
    int c = mae_json_peek(j);
    if (c == '"')
        return mae_json_string(j, NULL, 0, NULL);
    if (c == '-' || (c >= '0' && c <= '9'))
        return skip_number(j);
    if (c == 't')
        return skip_literal(j, "true");
    if (c == 'f')
        return skip_literal(j, "false");
    if (c == 'n')
        return skip_literal(j, "null");
    if (c != '{' && c != '[')
        return expected(j, "a JSON value");
    if (depth >= MAX_DEPTH)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: values nested deeper than %d", j->unit, j->base + j->pos, MAX_DEPTH);
    char close = c == '{' ? '}' : ']';
    j->pos++;
    int more = 1;
    mae_status s;
    for (int i = 0;; i++) {
        if ((s = mae_json_next(j, close, i, &more)) != MAE_OK || !more)
            return s;
        if (close == '}' && ((s = mae_json_string(j, NULL, 0, NULL)) != MAE_OK || (s = mae_json_colon(j)) != MAE_OK))
            return s;
        if ((s = skip_value(j, depth + 1)) != MAE_OK)
            return s;
    }
}

mae_status mae_json_skip(mae_json *j)
{
    return skip_value(j, 0);
}
