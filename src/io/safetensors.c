/* safetensors: the reader (hostile input: every length, offset and shape is checked before it is
 * used), the conversions of every dtype to float32, and the atomic writer.
 *
 * File layout: u64 little-endian N, N bytes of JSON (an object: "__metadata__" -> a string map,
 * every other key a tensor {"dtype", "shape", "data_offsets": [begin, end)} relative to the data
 * section), then the data section. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "safetensors.h"
#include "json.h"
#include "crc32c.h"
#include "../os/os.h"
#include "../util/atomic_file.h"
#include "../util/util.h"

typedef struct dtype_info { const char *name; size_t size; } dtype_info;

/* indexed by MAE_DT_* */
static const dtype_info dtypes[MAE_DT_COUNT] = {
    { "F32", 4 }, { "F16", 2 }, { "BF16", 2 }, { "F64", 8 }, { "I32", 4 }, { "I64", 8 },
    { "BOOL", 1 }, { "U8", 1 }, { "I8", 1 }, { "I16", 2 }, { "U16", 2 }, { "U32", 4 }, { "U64", 8 },
    { "F8_E5M2", 1 }, { "F8_E4M3", 1 },
};

size_t mae_st_dtype_size(int dtype)
{
    return dtype >= 0 && dtype < MAE_DT_COUNT ? dtypes[dtype].size : 0;
}

const char *mae_st_dtype_name(int dtype)
{
    return dtype >= 0 && dtype < MAE_DT_COUNT ? dtypes[dtype].name : NULL;
}

/* ASCII, whatever the locale. */
static int same_ignoring_case(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a >= 'a' && *a <= 'z' ? (char)(*a - 'a' + 'A') : *a;
        char y = *b >= 'a' && *b <= 'z' ? (char)(*b - 'a' + 'A') : *b;
        if (x != y)
            return 0;
    }
    return *a == *b;
}

int mae_st_save_dtype(const char *name)
{
    static const int savable[] = { MAE_DT_F32, MAE_DT_F16, MAE_DT_BF16 };
    for (size_t i = 0; i < sizeof savable / sizeof savable[0]; i++)
        if (same_ignoring_case(name, dtypes[savable[i]].name))
            return savable[i];
    return -1;
}

/* Re-records the current message behind a prefix (mae_fail reuses the message buffer). */
static mae_status with_prefix(mae_status s, const char *prefix)
{
    char msg[400];
    snprintf(msg, sizeof msg, "%s", mae_last_error());
    return mae_fail(s, "%s%s", prefix, msg);
}

/* ---- the header ----------------------------------------------------------------------------- */

enum { HAVE_DTYPE = 1, HAVE_SHAPE = 2, HAVE_OFFSETS = 4 };

static mae_status parse_dtype(mae_json *j, mae_st_entry *e)
{
    char buf[16];
    size_t len;
    mae_status s = mae_json_string(j, buf, sizeof buf, &len);
    if (s != MAE_OK)
        return s;
    for (int i = 0; i < MAE_DT_COUNT; i++)
        if (len < sizeof buf && strcmp(buf, dtypes[i].name) == 0) {
            e->dtype = i;
            return MAE_OK;
        }
    return mae_fail(MAE_ERR_FORMAT, "unknown dtype '%s'%s", buf, len >= sizeof buf ? "..." : "");
}

static mae_status parse_shape(mae_json *j, mae_st_entry *e)
{
    mae_status s = mae_json_open(j, '[');
    int more = 1;
    for (int i = 0; s == MAE_OK; i++) {
        if ((s = mae_json_next(j, ']', i, &more)) != MAE_OK || !more)
            break;
        if (i == MAE_ST_MAX_DIMS)
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: more than %d dimensions", mae_json_where(j), MAE_ST_MAX_DIMS);
        uint64_t d;
        if ((s = mae_json_uint(j, INT64_MAX, &d)) == MAE_OK) {
            e->shape[i] = (int64_t)d;
            e->ndim = i + 1;
        }
    }
    return s;
}

static mae_status parse_offsets(mae_json *j, mae_st_entry *e)
{
    mae_status s = mae_json_open(j, '[');
    int more = 1, i = 0;
    uint64_t v[2] = { 0, 0 };
    for (; s == MAE_OK; i++) {
        if ((s = mae_json_next(j, ']', i, &more)) != MAE_OK || !more)
            break;
        if (i == 2)
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: data_offsets holds more than 2 numbers", mae_json_where(j));
        s = mae_json_uint(j, SIZE_MAX, &v[i]);
    }
    if (s == MAE_OK && i != 2)
        return mae_fail(MAE_ERR_FORMAT, "data_offsets holds %d number(s), not 2", i);
    e->begin = (size_t)v[0];
    e->end = (size_t)v[1];
    return s;
}

/* What the entry's fields say about its bytes, checked against the data section. */
static mae_status check_entry(mae_st_entry *e, size_t data_size)
{
    size_t count = 1, bytes;
    for (int i = 0; i < e->ndim; i++)
        if (!mae_mul_size(count, (size_t)e->shape[i], &count))
            return mae_fail(MAE_ERR_FORMAT, "the shape's element count overflows");
    if (!mae_mul_size(count, dtypes[e->dtype].size, &bytes))
        return mae_fail(MAE_ERR_FORMAT, "the shape's byte size overflows");
    e->count = count;
    if (e->begin > e->end)
        return mae_fail(MAE_ERR_FORMAT, "data_offsets [%zu, %zu] are reversed", e->begin, e->end);
    if (e->end > data_size)
        return mae_fail(MAE_ERR_FORMAT, "data_offsets [%zu, %zu] reach past the %zu-byte data section (file truncated?)",
                        e->begin, e->end, data_size);
    if (e->end - e->begin != bytes)
        return mae_fail(MAE_ERR_FORMAT, "data_offsets [%zu, %zu] hold %zu bytes, but %zu %s values need %zu",
                        e->begin, e->end, e->end - e->begin, count, dtypes[e->dtype].name, bytes);
    return MAE_OK;
}

/* One tensor's object into *e (its name already there). */
static mae_status parse_tensor(mae_json *j, mae_st_entry *e, size_t data_size)
{
    int have = 0, more = 1;
    mae_status s = mae_json_open(j, '{');
    for (int i = 0; s == MAE_OK; i++) {
        if ((s = mae_json_next(j, '}', i, &more)) != MAE_OK || !more)
            break;
        char key[16];
        size_t len;
        size_t at = mae_json_where(j);
        if ((s = mae_json_string(j, key, sizeof key, &len)) != MAE_OK || (s = mae_json_colon(j)) != MAE_OK)
            break;
        int field = len >= sizeof key ? 0 : strcmp(key, "dtype") == 0 ? HAVE_DTYPE :
                    strcmp(key, "shape") == 0 ? HAVE_SHAPE : strcmp(key, "data_offsets") == 0 ? HAVE_OFFSETS : 0;
        if (field & have)
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: '%s' appears twice", at, key);
        have |= field;
        s = field == HAVE_DTYPE ? parse_dtype(j, e) : field == HAVE_SHAPE ? parse_shape(j, e) :
            field == HAVE_OFFSETS ? parse_offsets(j, e) : mae_json_skip(j);   /* unknown keys are ignored */
    }
    if (s != MAE_OK)
        return s;
    if (have != (HAVE_DTYPE | HAVE_SHAPE | HAVE_OFFSETS))
        return mae_fail(MAE_ERR_FORMAT, "no %s", !(have & HAVE_DTYPE) ? "dtype" : !(have & HAVE_SHAPE) ? "shape" : "data_offsets");
    return check_entry(e, data_size);
}

/* What the two passes over the header share: the first counts (tensors, metadata pairs, string
 * bytes), the second stores into arrays of those sizes. */
typedef struct st_parse {
    mae_st_file *f;
    int store;
    size_t str_len;       /* bytes of f->strings used so far */
    size_t crc_at;        /* file offset of the checksum's first hex digit; 0 when none */
} st_parse;

/* The checksum value at file offset `at` (its opening quote): exactly 8 lowercase hex digits as
 * the writer puts them, raw in the header (no escapes), so that the reader can read the file
 * with them as "00000000" and so that no single flipped bit can leave the value unchanged (an
 * uppercase digit would be the same number one bit away). */
static mae_status take_crc(const mae_json *j, size_t at, st_parse *p)
{
    const char *q = j->s + (at - j->base);
    if (p->crc_at)
        return mae_fail(MAE_ERR_FORMAT, "header byte %zu: %s appears twice", at, MAE_ST_CRC_KEY);
    uint32_t v = 0;
    for (int i = 1; i <= 8; i++) {
        char c = q[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: %s is not 8 lowercase hex digits (damaged?)", at, MAE_ST_CRC_KEY);
        v = v << 4 | (uint32_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    if (q[9] != '"')
        return mae_fail(MAE_ERR_FORMAT, "header byte %zu: %s is not 8 lowercase hex digits (damaged?)", at, MAE_ST_CRC_KEY);
    p->crc_at = at + 1;
    p->f->crc = v;
    return MAE_OK;
}

/* 1 when key is the checksum key with one bit flipped: a damaged libmae file that would
 * otherwise pass for a foreign file without a checksum. */
static int damaged_crc_key(const char *key, size_t len)
{
    const char *want = MAE_ST_CRC_KEY;
    if (len != strlen(want))
        return 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++)
        for (unsigned x = (unsigned char)(key[i] ^ want[i]); x; x &= x - 1)
            bits++;
    return bits == 1;
}

/* "__metadata__": string -> string. Pairs longer than the limits of mae_st_meta are skipped;
 * the checksum is taken apart from the others. */
static mae_status parse_meta(mae_json *j, st_parse *p)
{
    mae_st_file *f = p->f;
    int more = 1;
    mae_status s = mae_json_open(j, '{');
    for (int i = 0; s == MAE_OK; i++) {
        if ((s = mae_json_next(j, '}', i, &more)) != MAE_OK || !more)
            break;
        mae_st_meta m;
        size_t klen, vlen, kat = mae_json_where(j);
        if ((s = mae_json_string(j, m.key, sizeof m.key, &klen)) != MAE_OK || (s = mae_json_colon(j)) != MAE_OK)
            break;
        size_t at = mae_json_where(j);
        if (mae_json_peek(j) != '"')
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: __metadata__ value of '%s' is not a string", at, m.key);
        if ((s = mae_json_string(j, m.value, sizeof m.value, &vlen)) != MAE_OK)
            break;
        int fits = klen < sizeof m.key && vlen < sizeof m.value && strlen(m.key) == klen && strlen(m.value) == vlen;
        if (fits && strcmp(m.key, MAE_ST_CRC_KEY) == 0) {
            if ((s = take_crc(j, at, p)) != MAE_OK)
                return s;
            continue;
        }
        if (fits && damaged_crc_key(m.key, klen))
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: metadata key '%s' is '%s' with one bit flipped (damaged file)",
                            kat, m.key, MAE_ST_CRC_KEY);
        if (!fits)
            continue;
        if (f->n_meta == MAE_ST_MAX_META)
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: more than %d __metadata__ pairs (libmae keeps at most %d)",
                            kat, MAE_ST_MAX_META, MAE_ST_MAX_META);
        if (p->store) {
            char *k = f->strings + p->str_len, *v = k + klen + 1;
            memcpy(k, m.key, klen + 1);
            memcpy(v, m.value, vlen + 1);
            f->meta[f->n_meta] = (mae_st_pair){ k, v };
        }
        p->str_len += klen + vlen + 2;
        f->n_meta++;
    }
    return s;
}

/* Walks the header; with p->store == 0 it only counts tensors, metadata pairs and string bytes,
 * with p->store == 1 it fills the arrays sized by the counting pass. */
static mae_status parse_header(mae_json *j, st_parse *p)
{
    mae_st_file *f = p->f;
    int more = 1, have_meta = 0;
    mae_status s = mae_json_open(j, '{');
    f->n = f->n_meta = 0;
    p->str_len = p->crc_at = 0;
    for (int i = 0; s == MAE_OK; i++) {
        if ((s = mae_json_next(j, '}', i, &more)) != MAE_OK || !more)
            break;
        mae_st_entry e;
        memset(&e, 0, sizeof e);
        size_t at = mae_json_where(j), len;
        if ((s = mae_json_string(j, e.name, sizeof e.name, &len)) != MAE_OK || (s = mae_json_colon(j)) != MAE_OK)
            break;
        if (len >= sizeof e.name)
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: a tensor name of %zu bytes (at most %zu)", at, len, sizeof e.name - 1);
        if (strlen(e.name) != len)
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: a tensor name holds a NUL character", at);
        if (strcmp(e.name, "__metadata__") == 0) {
            if (have_meta)
                return mae_fail(MAE_ERR_FORMAT, "header byte %zu: __metadata__ appears twice", at);
            have_meta = 1;
            if ((s = parse_meta(j, p)) != MAE_OK)
                return with_prefix(s, "in __metadata__: ");
            continue;
        }
        if (mae_json_peek(j) != '{')
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: tensor '%s' is not an object", mae_json_where(j), e.name);
        if ((s = parse_tensor(j, &e, f->data_size)) != MAE_OK) {
            char pre[200];
            snprintf(pre, sizeof pre, "tensor '%s': ", e.name);
            return with_prefix(s, pre);
        }
        if (f->n == INT32_MAX)
            return mae_fail(MAE_ERR_FORMAT, "header byte %zu: more than %d tensors", at, INT32_MAX);
        if (p->store)
            f->t[f->n] = e;
        f->n++;
    }
    if (s == MAE_OK && mae_json_peek(j) >= 0)
        return mae_fail(MAE_ERR_FORMAT, "header byte %zu: text after the header's object", mae_json_where(j));
    return s;
}

/* ---- checks across entries ------------------------------------------------------------------ */

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const mae_st_entry *const *)a)->name, (*(const mae_st_entry *const *)b)->name);
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const mae_st_pair *)a)->key, ((const mae_st_pair *)b)->key);
}

static int by_offset(const void *a, const void *b)
{
    const mae_st_entry *x = *(const mae_st_entry *const *)a, *y = *(const mae_st_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Sorts the metadata by key and f->by_name by name (the lookups binary-search them), and checks
 * for duplicate names and keys, and for tensors whose bytes overlap (empty tensors overlap
 * nothing). */
static mae_status check_entries(mae_st_file *f)
{
    if (f->n_meta > 1)
        qsort(f->meta, (size_t)f->n_meta, sizeof *f->meta, by_key);
    for (int i = 1; i < f->n_meta; i++)
        if (by_key(&f->meta[i - 1], &f->meta[i]) == 0)
            return mae_fail(MAE_ERR_FORMAT, "__metadata__ key '%s' appears twice", f->meta[i].key);
    for (int i = 0; i < f->n; i++)
        f->by_name[i] = &f->t[i];
    if (f->n > 1)
        qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, by_name);
    for (int i = 1; i < f->n; i++)
        if (by_name(&f->by_name[i - 1], &f->by_name[i]) == 0)
            return mae_fail(MAE_ERR_FORMAT, "tensor '%s' appears twice", f->by_name[i]->name);
    if (f->n < 2)
        return MAE_OK;
    const mae_st_entry **p = mae_alloc((size_t)f->n * sizeof *p);
    if (!p)
        return mae_fail(MAE_ERR_NOMEM, "safetensors: out of memory for sorting %d tensors by offset (%zu bytes)",
                        f->n, (size_t)f->n * sizeof *p);
    memcpy(p, f->by_name, (size_t)f->n * sizeof *p);
    qsort(p, (size_t)f->n, sizeof *p, by_offset);
    mae_status s = MAE_OK;
    const mae_st_entry *prev = NULL;
    for (int i = 0; i < f->n && s == MAE_OK; i++) {
        const mae_st_entry *e = p[i];
        if (e->begin == e->end)
            continue;
        if (prev && e->begin < prev->end)
            s = mae_fail(MAE_ERR_FORMAT, "tensor '%s' (bytes %zu..%zu) overlaps tensor '%s' (bytes %zu..%zu)",
                         e->name, e->begin, e->end, prev->name, prev->begin, prev->end);
        prev = e;
    }
    mae_free(p);
    return s;
}

/* The bytes [0, n) of a file whose checksum digits start at file offset crc_at, hashed with
 * those digits read as '0's (n covers them). */
static void hash_head(mae_crc32c *c, const unsigned char *buf, size_t n, size_t crc_at)
{
    mae_crc32c_update(c, buf, crc_at);
    mae_crc32c_update(c, "00000000", 8);
    mae_crc32c_update(c, buf + crc_at + 8, n - crc_at - 8);
}

/* The file's CRC-32C, got from the size bytes hashed, against the stored value. */
static mae_status check_crc(uint32_t got, uint32_t want, uint64_t size)
{
    if (got != want)
        return mae_fail(MAE_ERR_FORMAT, "safetensors: checksum mismatch: %s says %08x, the file's %llu bytes give %08x "
                        "(the file is damaged)", MAE_ST_CRC_KEY, (unsigned)want, (unsigned long long)size, (unsigned)got);
    return MAE_OK;
}

/* ---- parse, open, close, find --------------------------------------------------------------- */

/* The header length n (the file's first 8 bytes) against the file's size; first: the header's
 * first byte (when n > 0). */
static mae_status check_length(uint64_t n, uint64_t size, int first)
{
    if (size < 8)
        return mae_fail(MAE_ERR_FORMAT, "safetensors: %llu bytes is too short for the 8-byte header length",
                        (unsigned long long)size);
    if (n > size - 8)
        return mae_fail(MAE_ERR_FORMAT, "safetensors: header length %llu at byte 0 reaches past the end of the %llu-byte file",
                        (unsigned long long)n, (unsigned long long)size);
    if (n > MAE_ST_MAX_HEADER)
        return mae_fail(MAE_ERR_FORMAT, "safetensors: header length %llu at byte 0 is larger than %u",
                        (unsigned long long)n, MAE_ST_MAX_HEADER);
    if (n < 2 || first != '{')
        return mae_fail(MAE_ERR_FORMAT, "safetensors: the header at byte 8 does not start with '{' (not a safetensors file)");
    return MAE_OK;
}

static uint64_t load_le(const unsigned char *p, size_t n);

/* The header's n bytes of text (file offset 8) into *f, whose data_size is set: counted, then
 * stored, then checked across entries. *crc_at gets the file offset of the checksum's digits, 0
 * when there is none. On failure f is emptied. */
static mae_status parse_image(const unsigned char *head, size_t n, mae_st_file *f, size_t *crc_at)
{
    st_parse p = { f, 0, 0, 0 };
    mae_json j;
    mae_json_init(&j, (const char *)head, n, 8);
    mae_status s = parse_header(&j, &p);
    if (s != MAE_OK)
        return with_prefix(s, "safetensors: ");
    int n_t = f->n, n_m = f->n_meta;
    size_t n_s = p.str_len;
    f->t = n_t ? mae_calloc((size_t)n_t, sizeof *f->t) : NULL;
    f->by_name = n_t ? mae_calloc((size_t)n_t, sizeof *f->by_name) : NULL;
    if (n_t && (!f->t || !f->by_name)) {
        mae_st_close(f);
        return mae_fail(MAE_ERR_NOMEM, "safetensors: out of memory for the entries of %d tensors (%zu bytes)", n_t,
                        (size_t)n_t * (sizeof *f->t + sizeof *f->by_name));
    }
    f->meta = n_m ? mae_calloc((size_t)n_m, sizeof *f->meta) : NULL;
    f->strings = n_s ? mae_alloc(n_s) : NULL;
    if ((n_m && !f->meta) || (n_s && !f->strings)) {
        mae_st_close(f);
        return mae_fail(MAE_ERR_NOMEM, "safetensors: out of memory for %d __metadata__ pairs (%zu bytes)", n_m,
                        (size_t)n_m * sizeof *f->meta + n_s);
    }
    p.store = 1;
    mae_json_init(&j, (const char *)head, n, 8);
    s = parse_header(&j, &p);
    assert(s != MAE_OK || (f->n == n_t && f->n_meta == n_m && p.str_len == n_s));   /* the same text parses the same twice */
    if (s == MAE_OK && (f->n != n_t || f->n_meta != n_m || p.str_len != n_s))
        s = mae_fail(MAE_ERR_FORMAT, "safetensors: the header parses differently twice");   /* cannot happen */
    if (s == MAE_OK && (s = check_entries(f)) != MAE_OK && s == MAE_ERR_FORMAT)
        s = with_prefix(s, "safetensors: ");
    if (s != MAE_OK) {
        mae_st_close(f);
        return s;
    }
    f->has_crc = p.crc_at != 0;
    *crc_at = p.crc_at;
    return MAE_OK;
}

mae_status mae_st_parse(const unsigned char *buf, size_t size, mae_st_file *f)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_parse: f is NULL");
    memset(f, 0, sizeof *f);
    if (!buf && size)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_parse: buf is NULL");
    uint64_t n = size >= 8 ? load_le(buf, 8) : 0;
    mae_status s = check_length(n, size, size > 8 ? buf[8] : -1);
    if (s != MAE_OK)
        return s;
    mae_st_file tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.data = buf + 8 + n;
    tmp.data_size = size - 8 - (size_t)n;
    size_t crc_at = 0;
    if ((s = parse_image(buf + 8, (size_t)n, &tmp, &crc_at)) != MAE_OK)
        return s;
    if (crc_at) {
        mae_crc32c c;
        mae_crc32c_init(&c);
        hash_head(&c, buf, size, crc_at);
        if ((s = check_crc(mae_crc32c_value(&c), tmp.crc, size)) != MAE_OK) {
            mae_st_close(&tmp);
            return s;
        }
    }
    *f = tmp;
    return MAE_OK;
}

/* ---- files read from their path ---------------------------------------------------------------
 * The header is read whole (bounded by MAE_ST_MAX_HEADER) and dropped once parsed; tensors are
 * read on demand. The checksum runs along the file: `run` has hashed its bytes [0, done), and a
 * read that starts at or after done first hashes the bytes in between (read through buf), then
 * the tensor's own as they arrive; mae_st_verify hashes from done to the end. */

enum { STREAM_BUF = 65536,             /* a multiple of every element size */
       DIRECT_PIECE = 1 << 20 };       /* float32 read into place and hashed a piece at a time,
                                        * while the piece is still in the cache */

struct mae_st_stream {
    FILE *fp;
    uint64_t at;             /* where fp is (a sequential read needs no seek) */
    uint64_t data_at;        /* the data section's file offset: 8 + the header length */
    uint64_t size;           /* the file's size when opened */
    int hashing;             /* the file has a checksum not yet verified */
    int broken;              /* a read failed part-way: run no longer means anything */
    uint64_t done;           /* run has hashed the file's bytes [0, done) */
    mae_crc32c run;
    unsigned char buf[STREAM_BUF];
};

/* n bytes at file offset pos into dst; MAE_ERR_IO naming what was read. */
static mae_status stream_read(mae_st_stream *st, uint64_t pos, void *dst, size_t n, const char *what)
{
    if (st->at != pos) {
        if (mae_os_seek(st->fp, pos) != 0) {
            st->at = UINT64_MAX;
            return mae_fail(MAE_ERR_IO, "%s: cannot seek to byte %llu of the file", what, (unsigned long long)pos);
        }
        st->at = pos;
    }
    size_t got = n ? fread(dst, 1, n, st->fp) : 0;
    st->at += got;
    if (got != n)
        return mae_fail(MAE_ERR_IO, "%s: read %zu of %zu bytes at byte %llu of the %llu-byte file (%s)", what, got, n,
                        (unsigned long long)pos, (unsigned long long)st->size,
                        ferror(st->fp) ? "a read error" : "the file is shorter than when it was opened");
    return MAE_OK;
}

/* Hashes the file's bytes [st->done, end) by reading them through st->buf. */
static mae_status hash_until(mae_st_stream *st, uint64_t end, const char *what)
{
    while (st->done < end) {
        size_t n = end - st->done < STREAM_BUF ? (size_t)(end - st->done) : STREAM_BUF;
        mae_status s = stream_read(st, st->done, st->buf, n, what);
        if (s != MAE_OK)
            return s;
        mae_crc32c_update(&st->run, st->buf, n);
        st->done += n;
    }
    return MAE_OK;
}

mae_status mae_st_open_stream(const char *path, mae_st_file *f)
{
    if (!f || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_open: %s is NULL", !f ? "f" : "path");
    memset(f, 0, sizeof *f);
    FILE *fp = mae_os_fopen(path, "rb");
    char err[128];
    if (!fp)
        return mae_fail(MAE_ERR_IO, "'%s': cannot open: %s", path, mae_os_strerror(errno, err, sizeof err));
    uint64_t st_size;
    if (mae_os_file_size(fp, &st_size) != 0) {
        fclose(fp);
        return mae_fail(MAE_ERR_IO, "'%s': not a regular file", path);
    }
    uint64_t size = st_size;
    mae_st_stream *sm = mae_alloc(sizeof *sm);
    if (!sm) {
        fclose(fp);
        return mae_fail(MAE_ERR_NOMEM, "'%s': out of memory for reading it", path);
    }
    memset(sm, 0, offsetof(mae_st_stream, run));
    sm->fp = fp;
    sm->size = size;
    f->stream = sm;   /* from here on mae_st_close(f) releases everything */
    unsigned char len[9] = { 0 };
    uint64_t n = 0;
    size_t len_n = size < 9 ? (size_t)size : 9;   /* the length and the header's first byte */
    mae_status s = stream_read(sm, 0, len, len_n, "safetensors: the header length");
    if (s == MAE_OK) {
        n = size >= 8 ? load_le(len, 8) : 0;
        s = check_length(n, size, size > 8 ? len[8] : -1);
    }
    if (s == MAE_OK && size != (size_t)size)
        s = mae_fail(MAE_ERR_NOMEM, "safetensors: %llu bytes are more than this machine can address", (unsigned long long)size);
    unsigned char *head = s == MAE_OK ? mae_alloc(8 + (size_t)n) : NULL;
    if (s == MAE_OK && !head)
        s = mae_fail(MAE_ERR_NOMEM, "safetensors: cannot allocate %llu bytes for the header", (unsigned long long)n);
    if (s == MAE_OK) {
        memcpy(head, len, 8);
        s = stream_read(sm, 8, head + 8, (size_t)n, "safetensors: the header");
    }
    size_t crc_at = 0;
    mae_st_file tmp;
    memset(&tmp, 0, sizeof tmp);
    if (s == MAE_OK) {
        tmp.data_size = (size_t)(size - 8 - n);
        s = parse_image(head + 8, (size_t)n, &tmp, &crc_at);
    }
    if (s == MAE_OK && crc_at) {   /* the length and the header now, the data as it is read */
        mae_crc32c_init(&sm->run);
        hash_head(&sm->run, head, 8 + (size_t)n, crc_at);
        sm->hashing = 1;
    }
    mae_free(head);
    if (s != MAE_OK) {
        char pre[300];
        snprintf(pre, sizeof pre, "'%s': ", path);
        mae_st_close(f);
        return with_prefix(s, pre);
    }
    sm->data_at = sm->done = 8 + n;
    tmp.stream = sm;
    *f = tmp;
    return MAE_OK;
}

mae_status mae_st_verify(const mae_st_file *f)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_verify: f is NULL");
    mae_st_stream *st = f->stream;
    if (!st || !st->hashing)
        return MAE_OK;
    if (st->broken)
        return mae_fail(MAE_ERR_IO, "safetensors: the checksum cannot be verified: an earlier read failed");
    mae_status s = hash_until(st, st->size, "safetensors: verifying the checksum");
    if (s != MAE_OK)
        return s;
    if ((s = check_crc(mae_crc32c_value(&st->run), f->crc, st->size)) != MAE_OK)
        return s;
    st->hashing = 0;   /* verified: later reads need not hash */
    return MAE_OK;
}

mae_status mae_st_open(const char *path, mae_st_file *f)
{
    mae_status s = mae_st_open_stream(path, f);
    if (s == MAE_OK && (s = mae_st_verify(f)) != MAE_OK) {
        char pre[300];
        snprintf(pre, sizeof pre, "'%s': ", path);
        mae_st_close(f);
        return with_prefix(s, pre);
    }
    return s;
}

void mae_st_close(mae_st_file *f)
{
    if (!f)
        return;
    if (f->stream) {
        fclose(f->stream->fp);
        mae_free(f->stream);
    }
    mae_free(f->t);
    mae_free(f->by_name);
    mae_free(f->meta);
    mae_free(f->strings);
    mae_free(f->owned);
    memset(f, 0, sizeof *f);
}

mae_status mae_st_merge(const mae_st_file *parts, int n, unsigned char *buf, size_t buf_size, mae_st_file *out)
{
    size_t n_t = 0, n_m = 0, n_s = 0;
    for (int k = 0; k < n; k++) {
        n_t += (size_t)parts[k].n;
        n_m += (size_t)parts[k].n_meta;
        for (int i = 0; i < parts[k].n_meta; i++)
            n_s += strlen(parts[k].meta[i].key) + strlen(parts[k].meta[i].value) + 2;
    }
    memset(out, 0, sizeof *out);
    if (n_t > INT_MAX || n_m > MAE_ST_MAX_META)
        return mae_fail(MAE_ERR_FORMAT, "safetensors: %zu tensors and %zu __metadata__ pairs are more than one file may hold",
                        n_t, n_m);
    out->t = n_t ? mae_calloc(n_t, sizeof *out->t) : NULL;
    out->by_name = n_t ? mae_calloc(n_t, sizeof *out->by_name) : NULL;
    out->meta = n_m ? mae_calloc(n_m, sizeof *out->meta) : NULL;
    out->strings = n_s ? mae_alloc(n_s) : NULL;
    if ((n_t && (!out->t || !out->by_name)) || (n_m && !out->meta) || (n_s && !out->strings)) {
        mae_st_close(out);
        return mae_fail(MAE_ERR_NOMEM, "safetensors: out of memory for %zu tensors and %zu __metadata__ pairs", n_t, n_m);
    }
    char *str = out->strings;
    for (int k = 0; k < n; k++) {
        size_t shift = (size_t)(parts[k].data - buf);
        for (int i = 0; i < parts[k].n; i++) {
            mae_st_entry e = parts[k].t[i];
            e.begin += shift;
            e.end += shift;
            out->t[out->n++] = e;
        }
        for (int i = 0; i < parts[k].n_meta; i++) {
            mae_st_pair *m = &out->meta[out->n_meta++];
            size_t kl = strlen(parts[k].meta[i].key) + 1, vl = strlen(parts[k].meta[i].value) + 1;
            m->key = memcpy(str, parts[k].meta[i].key, kl);
            m->value = memcpy(str + kl, parts[k].meta[i].value, vl);
            str += kl + vl;
        }
    }
    /* the same key from several parts: kept once when they agree */
    if (out->n_meta > 1)
        qsort(out->meta, (size_t)out->n_meta, sizeof *out->meta, by_key);
    int w = 0;
    for (int i = 0; i < out->n_meta; i++) {
        if (w > 0 && strcmp(out->meta[w - 1].key, out->meta[i].key) == 0) {
            if (strcmp(out->meta[w - 1].value, out->meta[i].value) != 0) {
                mae_status s = mae_fail(MAE_ERR_FORMAT, "the parts' __metadata__ disagree on '%s': '%s' and '%s'",
                                        out->meta[i].key, out->meta[w - 1].value, out->meta[i].value);
                mae_st_close(out);
                return s;
            }
            continue;
        }
        out->meta[w++] = out->meta[i];
    }
    out->n_meta = w;
    out->data = buf;
    out->data_size = buf_size;
    mae_status s = check_entries(out);
    if (s != MAE_OK) {
        mae_st_close(out);
        return s == MAE_ERR_FORMAT ? with_prefix(s, "safetensors: ") : s;
    }
    out->owned = buf;
    return MAE_OK;
}

const mae_st_entry *mae_st_find(const mae_st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    if (!f->by_name) {   /* a file put together by hand, without the parser's index */
        for (int i = 0; i < f->n; i++)
            if (strcmp(f->t[i].name, name) == 0)
                return &f->t[i];
        return NULL;
    }
    int lo = 0, hi = f->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->by_name[mid]->name, name);
        if (c == 0)
            return f->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *mae_st_meta_get(const mae_st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    int lo = 0, hi = f->n_meta;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->meta[mid].key, key);
        if (c == 0)
            return f->meta[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- conversion to float32 ------------------------------------------------------------------ */

static uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static float bits_to_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* IEEE binary16: subnormals scale exactly by 2^-24; inf and NaN keep their sign and payload. */
static float half_to_float(uint32_t h)
{
    uint32_t sign = (h & 0x8000u) << 16, e = h >> 10 & 0x1F, m = h & 0x3FF;
    if (e == 0) {
        float x = (float)m * 0x1p-24f;
        return sign ? -x : x;
    }
    if (e == 31)
        return bits_to_float(sign | 0x7F800000u | m << 13);
    return bits_to_float(sign | (e + 112) << 23 | m << 13);
}

/* float8 e4m3fn (bias 7, no infinities, S.1111.111 is NaN). */
static float e4m3_to_float(uint32_t b)
{
    uint32_t e = b >> 3 & 0xF, m = b & 7;
    float x = e == 0 ? (float)m * 0x1p-9f : e == 15 && m == 7 ? NAN : ldexpf(1.0f + (float)m / 8.0f, (int)e - 7);
    return b & 0x80 ? -x : x;
}

/* Rounds to nearest like a cast, with overflow to infinity defined here rather than left to
 * the compiler (a cast of an out-of-range double is undefined in C). */
static float double_to_float(double d)
{
    const double limit = 0x1.ffffffp127;   /* FLT_MAX + half an ulp: from here on it rounds to inf */
    if (d >= limit)
        return INFINITY;
    if (d <= -limit)
        return -INFINITY;
    return (float)d;
}

static int host_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* One element of the dtypes without a loop of their own in mae_st_read_f32. */
static float convert_one(int dtype, const unsigned char *p)
{
    uint64_t v = load_le(p, dtypes[dtype].size);
    double d;
    switch (dtype) {
    case MAE_DT_F32: return bits_to_float((uint32_t)v);   /* on a big-endian host */
    case MAE_DT_F64: memcpy(&d, &v, sizeof d); return double_to_float(d);
    case MAE_DT_I32: return (float)(int32_t)(uint32_t)v;
    case MAE_DT_I64: return (float)(int64_t)v;
    case MAE_DT_BOOL: return v ? 1.0f : 0.0f;
    case MAE_DT_U8: case MAE_DT_U16: case MAE_DT_U32: case MAE_DT_U64: return (float)v;
    case MAE_DT_I8: return (float)(int8_t)(uint8_t)v;
    case MAE_DT_I16: return (float)(int16_t)(uint16_t)v;
    case MAE_DT_F8_E5M2: return half_to_float((uint32_t)v << 8);
    case MAE_DT_F8_E4M3: return e4m3_to_float((uint32_t)v);
    }
    return NAN;
}

/* count values of dtype at src into dst. */
static void convert(int dtype, const unsigned char *src, float *dst, size_t count)
{
    size_t size = dtypes[dtype].size;
    if (dtype == MAE_DT_F32 && host_little_endian()) {
        if (count)
            memcpy(dst, src, count * size);
    } else if (dtype == MAE_DT_F16) {   /* the common dtypes of published weights get their own loops */
        for (size_t i = 0; i < count; i++)
            dst[i] = half_to_float((uint32_t)src[2 * i] | (uint32_t)src[2 * i + 1] << 8);
    } else if (dtype == MAE_DT_BF16) {
        for (size_t i = 0; i < count; i++)
            dst[i] = bits_to_float((uint32_t)src[2 * i] << 16 | (uint32_t)src[2 * i + 1] << 24);
    } else {
        for (size_t i = 0; i < count; i++)
            dst[i] = convert_one(dtype, src + i * size);
    }
}

/* A tensor from an open file: float32 on a little-endian host straight into dst, a piece at a
 * time; any other dtype through the stream's buffer. Hashed as read when the read is ahead of
 * the checksum (the bytes before it first). */
static mae_status read_stream(const mae_st_file *f, const mae_st_entry *e, float *dst, size_t bytes)
{
    mae_st_stream *st = f->stream;
    char what[200];
    snprintf(what, sizeof what, "tensor '%s'", e->name);
    uint64_t pos = st->data_at + e->begin;
    int hash = st->hashing && !st->broken && pos >= st->done;
    mae_status s = hash ? hash_until(st, pos, what) : MAE_OK;
    int direct = e->dtype == MAE_DT_F32 && host_little_endian();
    size_t size = dtypes[e->dtype].size, piece = direct ? DIRECT_PIECE : STREAM_BUF;
    for (size_t off = 0; off < bytes && s == MAE_OK; off += piece) {
        size_t n = bytes - off < piece ? bytes - off : piece;
        unsigned char *to = direct ? (unsigned char *)dst + off : st->buf;
        if ((s = stream_read(st, pos + off, to, n, what)) != MAE_OK)
            break;
        if (hash)
            mae_crc32c_update(&st->run, to, n);
        if (!direct)
            convert(e->dtype, st->buf, dst + off / size, n / size);
    }
    if (hash && s == MAE_OK)
        st->done = pos + bytes;
    else if (hash)
        st->broken = 1;
    return s;
}

mae_status mae_st_read_f32(const mae_st_file *f, const mae_st_entry *e, float *dst, size_t count)
{
    if (!f || !e || (!dst && count))
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_read_f32: %s is NULL", !f ? "f" : !e ? "the entry" : "dst");
    if (count != e->count)
        return mae_fail(MAE_ERR_SHAPE, "tensor '%s': %zu values asked for, the file holds %zu", e->name, count, e->count);
    size_t size = mae_st_dtype_size(e->dtype), bytes;
    /* the entry was checked when parsed; checked again so that a stray entry cannot read outside */
    if (!size || !mae_mul_size(count, size, &bytes) || e->begin > f->data_size || bytes > f->data_size - e->begin ||
        (bytes && !f->data && !f->stream))
        return mae_fail(MAE_ERR_INVALID_ARG, "tensor '%s': the entry does not belong to this file", e->name);
    if (bytes == 0)
        return MAE_OK;
    if (f->stream)
        return read_stream(f, e, dst, bytes);
    convert(e->dtype, f->data + e->begin, dst, count);
    return MAE_OK;
}

/* ---- the writer ----------------------------------------------------------------------------- */

/* float32 -> IEEE binary16, rounded to nearest, ties to even, on the bits (no dependence on the
 * host's half support or rounding mode). Subnormal halves are rounded at their own spacing 2^-24;
 * a mantissa that rounds up carries into the exponent (the next binade, and from 65520 on into
 * infinity: *overflow is then set for a finite x). NaN stays NaN (quiet, sign and the top of the
 * payload kept), infinities stay infinite. */
static uint16_t float_to_half(float x, int *overflow)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t sign = u >> 16 & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)                       /* NaN */
        return (uint16_t)(sign | 0x7E00u | (a >> 13 & 0x3FFu));
    if (a == 0x7F800000u)
        return (uint16_t)(sign | 0x7C00u);
    if (a >= 0x477FF000u) {                    /* 65520 = 65504 + half an ulp: rounds to inf */
        *overflow = 1;
        return (uint16_t)(sign | 0x7C00u);
    }
    if (a >= 0x38800000u) {                    /* a normal half: 2^-14 <= |x| */
        uint32_t h = (a - (112u << 23)) >> 13, rest = a & 0x1FFFu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    if (a <= 0x33000000u)                      /* |x| <= 2^-25: to zero (2^-25 is a tie: even) */
        return (uint16_t)sign;
    uint32_t mant = (a & 0x7FFFFFu) | 0x800000u, shift = 126u - (a >> 23);   /* 14..24 */
    uint32_t h = mant >> shift, rest = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (h & 1)))
        h++;                                   /* 0x400 is the smallest normal: still right */
    return (uint16_t)(sign | h);
}

/* float32 -> bfloat16 (the high half), rounded to nearest, ties to even; subnormals need no case
 * of their own. From 0x1.fffp127 on a finite value rounds to infinity (*overflow set). */
static uint16_t float_to_bf16(float x, int *overflow)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)      /* NaN: quiet, so that the payload cannot vanish */
        return (uint16_t)(u >> 16 | 0x0040u);
    uint32_t r = (u + 0x7FFFu + (u >> 16 & 1)) >> 16;
    if ((r & 0x7FFFu) == 0x7F80u && (u & 0x7FFFFFFFu) != 0x7F800000u)
        *overflow = 1;
    return (uint16_t)r;
}

/* Text built in two passes: with buf NULL it only measures. */
typedef struct text {
    char *buf;
    size_t len;
    int overflow;
    size_t crc_at;   /* offset of the checksum's placeholder digits in the text */
} text;

static void emit(text *t, const char *s, size_t n)
{
    if (n > SIZE_MAX / 2 - t->len) {
        t->overflow = 1;
        return;
    }
    if (t->buf)
        memcpy(t->buf + t->len, s, n);
    t->len += n;
}

static void emit_str(text *t, const char *s)
{
    emit(t, s, strlen(s));
}

static void emit_json_string(text *t, const char *s, size_t max)
{
    emit(t, "\"", 1);
    for (size_t i = 0; i < max && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            emit(t, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            emit(t, esc, 6);
        } else {
            emit(t, &s[i], 1);
        }
    }
    emit(t, "\"", 1);
}

/* The header: metadata first, then the tensors in the given order with contiguous offsets,
 * padded with spaces to a multiple of 8 bytes so that the data section starts aligned. */
static void build_header(text *t, const mae_st_out *ts, int n, const mae_st_meta *meta, int n_meta, int dtype)
{
    size_t size = mae_st_dtype_size(dtype);
    char num[64];
    /* the checksum first, as a placeholder that write_stream overwrites with the CRC-32C of all
     * the bytes written (the placeholder included) */
    emit_str(t, "{\"__metadata__\":{\"" MAE_ST_CRC_KEY "\":\"");
    t->crc_at = t->len;
    emit_str(t, "00000000\"");
    for (int i = 0; i < n_meta; i++) {
        emit_str(t, ",");
        emit_json_string(t, meta[i].key, sizeof meta[i].key);
        emit_str(t, ":");
        emit_json_string(t, meta[i].value, sizeof meta[i].value);
    }
    emit_str(t, n > 0 ? "}," : "}");
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        size_t count = 1;
        for (int d = 0; d < ts[i].ndim; d++)
            count *= (size_t)ts[i].shape[d];   /* checked by check_outputs */
        emit_json_string(t, ts[i].name, SIZE_MAX);
        emit_str(t, ":{\"dtype\":\"");
        emit_str(t, mae_st_dtype_name(dtype));
        emit_str(t, "\",\"shape\":[");
        for (int d = 0; d < ts[i].ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)ts[i].shape[d]);
            emit_str(t, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", offset, offset + count * size);
        emit_str(t, num);
        emit_str(t, i + 1 < n ? "," : "");
        offset += count * size;
    }
    emit_str(t, "}");
    while (t->len % 8 && !t->overflow)
        emit_str(t, " ");
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Tensor names given twice, found by sorting them (a model of many blocks has many tensors). */
static mae_status check_unique(const mae_st_out *ts, int n)
{
    if (n < 2)
        return MAE_OK;
    const char **names = mae_alloc((size_t)n * sizeof *names);
    if (!names)
        return mae_fail(MAE_ERR_NOMEM, "mae_st_write: out of memory for sorting %d tensor names", n);
    for (int i = 0; i < n; i++)
        names[i] = ts[i].name;
    qsort(names, (size_t)n, sizeof *names, by_string);
    mae_status s = MAE_OK;
    for (int i = 1; i < n && s == MAE_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            s = mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: tensor '%s' appears twice", names[i]);
    mae_free(names);
    return s;
}

/* Everything that can be wrong with the caller's tensors and metadata; *bytes gets the size of
 * the data section. */
static mae_status check_outputs(const mae_st_out *ts, int n, const mae_st_meta *meta, int n_meta, int fetch,
                                size_t elem_size, size_t *bytes)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const mae_st_out *t = &ts[i];
        if (!t->name || !t->name[0] || strlen(t->name) >= sizeof(((mae_st_entry *)0)->name) || strcmp(t->name, "__metadata__") == 0)
            return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: tensor %d has no usable name (1..159 bytes, not __metadata__)", i);
        if (t->ndim < 0 || t->ndim > MAE_ST_MAX_DIMS || (t->ndim > 0 && !t->shape))
            return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: tensor '%s' has %d dimensions", t->name, t->ndim);
        size_t count = 1, b;
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0 || !mae_mul_size(count, (size_t)t->shape[d], &count))
                return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: tensor '%s' has a bad shape", t->name);
        if (!mae_mul_size(count, elem_size, &b) || !mae_add_size(total, b, &total))
            return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: the tensors' size overflows");
        if (count && !t->data && !fetch)
            return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: tensor '%s' has no data", t->name);
    }
    mae_status s = check_unique(ts, n);
    if (s != MAE_OK)
        return s;
    for (int i = 0; i < n_meta; i++) {
        if (!meta[i].key[0] || !memchr(meta[i].key, 0, sizeof meta[i].key) || !memchr(meta[i].value, 0, sizeof meta[i].value))
            return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: metadata pair %d is empty or not terminated", i);
        if (strcmp(meta[i].key, MAE_ST_CRC_KEY) == 0)
            return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: metadata key '%s' is the writer's own", meta[i].key);
        for (int k = 0; k < i; k++)
            if (strcmp(meta[k].key, meta[i].key) == 0)
                return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: metadata key '%s' appears twice", meta[i].key);
    }
    *bytes = total;
    return MAE_OK;
}

/* Header length, header, then every tensor as little-endian float32, float16 or bfloat16, through a
 * small buffer so that the byte order does not depend on the host; then the CRC-32C of all those
 * bytes over the header's placeholder digits. 1 when written; 0 on a write error (errno set); -1
 * when a finite value of tensor *bad (its index *bad_index, the value *bad_value) would round to
 * infinity in the output dtype (nothing more is written). */
static int write_stream(FILE *fp, const text *h, const mae_st_out *ts, int n, int dtype, mae_st_fetch fetch,
                        const void *arg, float *scratch, int *bad, size_t *bad_index, float *bad_value)
{
    unsigned char buf[16384];   /* a multiple of every element size */
    mae_crc32c crc;
    mae_crc32c_init(&crc);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
    if (fwrite(buf, 1, 8, fp) != 8 || fwrite(h->buf, 1, h->len, fp) != h->len)
        return 0;
    mae_crc32c_update(&crc, buf, 8);
    mae_crc32c_update(&crc, h->buf, h->len);
    for (int t = 0; t < n; t++) {
        size_t count = 1, fill = 0;
        for (int d = 0; d < ts[t].ndim; d++)
            count *= (size_t)ts[t].shape[d];
        const float *data = ts[t].data;
        if (!data && count) {
            fetch(arg, t, scratch);
            data = scratch;
        }
        for (size_t i = 0; i < count; i++) {
            uint32_t u;
            int overflow = 0;
            if (dtype == MAE_DT_F32) {
                memcpy(&u, &data[i], sizeof u);
                buf[fill++] = (unsigned char)u;
                buf[fill++] = (unsigned char)(u >> 8);
                buf[fill++] = (unsigned char)(u >> 16);
                buf[fill++] = (unsigned char)(u >> 24);
            } else {
                u = dtype == MAE_DT_F16 ? float_to_half(data[i], &overflow) : float_to_bf16(data[i], &overflow);
                if (overflow) {
                    *bad = t;
                    *bad_index = i;
                    *bad_value = data[i];
                    return -1;
                }
                buf[fill++] = (unsigned char)u;
                buf[fill++] = (unsigned char)(u >> 8);
            }
            if (fill == sizeof buf || i + 1 == count) {
                if (fwrite(buf, 1, fill, fp) != fill)
                    return 0;
                mae_crc32c_update(&crc, buf, fill);
                fill = 0;
            }
        }
    }
    char digits[9];
    snprintf(digits, sizeof digits, "%08x", (unsigned)mae_crc32c_value(&crc));
    if (fseek(fp, (long)(8 + h->crc_at), SEEK_SET) != 0 || fwrite(digits, 1, 8, fp) != 8)
        return 0;
    return 1;
}

/* What the atomic writer's callback needs to stream the file (header built, scratch allocated). */
typedef struct st_stream {
    const char *path;
    const text *h;
    const mae_st_out *tensors;
    int n, dtype;
    mae_st_fetch fetch;
    const void *arg;
    float *scratch;
    int bad;             /* out: the tensor holding a value beyond the dtype's range, or -1 */
    size_t bad_index;
    float bad_value;
} st_stream;

static mae_status stream_cb(FILE *fp, void *p)
{
    st_stream *c = p;
    int w = write_stream(fp, c->h, c->tensors, c->n, c->dtype, c->fetch, c->arg, c->scratch,
                         &c->bad, &c->bad_index, &c->bad_value);
    if (w < 0)
        return mae_fail(MAE_ERR_UNSUPPORTED, "'%s': tensor '%s' holds %g (element %zu), beyond the %s range (largest finite %s): not written",
                        c->path, c->tensors[c->bad].name, (double)c->bad_value, c->bad_index, mae_st_dtype_name(c->dtype),
                        c->dtype == MAE_DT_F16 ? "65504" : "3.3895e38");
    return w == 1 ? MAE_OK : MAE_ERR_IO;
}

mae_status mae_st_write(const char *path, const mae_st_out *tensors, int n,
                        const mae_st_meta *meta, int n_meta)
{
    return mae_st_write_as(path, tensors, n, meta, n_meta, MAE_DT_F32, NULL, NULL);
}

mae_status mae_st_write_as(const char *path, const mae_st_out *tensors, int n, const mae_st_meta *meta,
                           int n_meta, int dtype, mae_st_fetch fetch, const void *arg)
{
    if (!path || !path[0] || n < 0 || (n > 0 && !tensors) || n_meta < 0 || (n_meta > 0 && !meta))
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: bad arguments (path, %d tensors, %d metadata pairs)", n, n_meta);
    if (dtype != MAE_DT_F32 && dtype != MAE_DT_F16 && dtype != MAE_DT_BF16)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: output dtype %d is not F32, F16 or BF16", dtype);
    size_t data_bytes = 0;
    mae_status s = check_outputs(tensors, n, meta, n_meta, fetch != NULL, mae_st_dtype_size(dtype), &data_bytes);
    if (s != MAE_OK)
        return s;
    text h = { NULL, 0, 0, 0 };
    build_header(&h, tensors, n, meta, n_meta, dtype);
    if (h.overflow || h.len > MAE_ST_MAX_HEADER)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_st_write: the header would be larger than %u bytes", MAE_ST_MAX_HEADER);
    size_t fetched = 0;
    for (int i = 0; i < n; i++) {   /* the largest tensor given by fetch (sizes checked above) */
        size_t count = 1;
        for (int d = 0; d < tensors[i].ndim; d++)
            count *= (size_t)tensors[i].shape[d];
        if (!tensors[i].data && count > fetched)
            fetched = count;
    }
    h.buf = mae_alloc(h.len);
    float *scratch = fetched ? mae_alloc(fetched * sizeof *scratch) : NULL;
    if (!h.buf || (fetched && !scratch)) {
        mae_free(h.buf);
        mae_free(scratch);
        return mae_fail(MAE_ERR_NOMEM, "mae_st_write: out of memory for writing '%s'", path);
    }
    size_t len = h.len;
    h.len = 0;
    build_header(&h, tensors, n, meta, n_meta, dtype);
    if (h.len != len) {   /* cannot happen: the two passes build the same header */
        s = mae_fail(MAE_ERR_STATE, "mae_st_write: the header came out differently twice");
    } else {
        st_stream c = { path, &h, tensors, n, dtype, fetch, arg, scratch, -1, 0, 0 };
        s = mae_atomic_write(NULL, path, stream_cb, &c);
    }
    mae_free(h.buf);
    mae_free(scratch);
    return s;
}
