/* safetensors: 8-byte little-endian header length, a JSON header, raw tensor data.
 * The reader treats the file as hostile: every length, offset and shape is checked before use. */
#ifndef MAE_SAFETENSORS_H
#define MAE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "mae.h"

enum { MAE_DT_F32 = 0, MAE_DT_F16 = 1, MAE_DT_BF16 = 2, MAE_DT_F64 = 3, MAE_DT_I32 = 4, MAE_DT_I64 = 5 };

/* The other dtypes of the safetensors spec; every dtype is readable as float32. */
enum { MAE_DT_BOOL = 6, MAE_DT_U8 = 7, MAE_DT_I8 = 8, MAE_DT_I16 = 9, MAE_DT_U16 = 10, MAE_DT_U32 = 11,
       MAE_DT_U64 = 12, MAE_DT_F8_E5M2 = 13, MAE_DT_F8_E4M3 = 14, MAE_DT_COUNT = 15 };

#define MAE_ST_MAX_DIMS 8
#define MAE_ST_MAX_HEADER 100000000u   /* header bytes accepted, as the reference implementation */

size_t      mae_st_dtype_size(int dtype);   /* bytes per element; 0 for an unknown id */
const char *mae_st_dtype_name(int dtype);   /* "F32", ...; NULL for an unknown id */
/* The dtype a saver may write, from its name in any case ("f16", "BF16"): MAE_DT_F32, MAE_DT_F16
 * or MAE_DT_BF16; -1 for anything else. */
int         mae_st_save_dtype(const char *name);

typedef struct mae_st_entry {
    char    name[160];
    int     dtype;                    /* MAE_DT_* */
    int     ndim;
    int64_t shape[MAE_ST_MAX_DIMS];
    size_t  count;                    /* product of shape */
    size_t  begin, end;               /* byte offsets inside the data section */
} mae_st_entry;

/* A metadata pair to write (the writer's input). */
typedef struct mae_st_meta {
    char key[64];
    char value[256];
} mae_st_meta;

/* A metadata pair read: both strings live in mae_st_file.strings. */
typedef struct mae_st_pair {
    const char *key, *value;
} mae_st_pair;

/* The reader keeps __metadata__ pairs whose key has at most 63 bytes and value at most 255 (the
 * writer's limits; longer pairs are skipped), and at most MAE_ST_MAX_META of them: a header with
 * more is refused, so that what a file costs in memory stays a small multiple of its size. */
#define MAE_ST_MAX_META 65536

/* The key of libmae's checksum in __metadata__: 8 lowercase hex digits, the CRC-32C of the whole
 * file read with those digits as "00000000" (docs/FORMAT.md). */
#define MAE_ST_CRC_KEY "libmae.crc32c"

/* A file being read from its path (safetensors.c). */
typedef struct mae_st_stream mae_st_stream;

typedef struct mae_st_file {
    const unsigned char *data;        /* the data section of a file image in memory, else NULL */
    size_t data_size;
    mae_st_stream *stream;            /* the open file when opened from a path, else NULL */
    mae_st_entry *t;                  /* in the header's order */
    int n;
    mae_st_pair *meta;                /* __metadata__ string pairs, sorted by key (the checksum not among them) */
    int n_meta;
    char *strings;                    /* the metadata's decoded keys and values, each NUL-terminated */
    const mae_st_entry **by_name;     /* the n entries sorted by name, for mae_st_find */
    int has_crc;                      /* the file carries libmae.crc32c (verified, except after
                                       * mae_st_open_stream until mae_st_verify says so) */
    uint32_t crc;                     /* its value */
    void *owned;                      /* a buffer the file holds its data in (mae_st_merge), freed
                                       * by mae_st_close */
} mae_st_file;

/* Opening from a path holds the header's entries and metadata, never the data: mae_st_read_f32
 * reads each tensor from the file straight into its destination (other dtypes through a small
 * buffer), so that loading a model costs its weights and not the file as well. */

/* Opens a file and parses its header, then verifies the checksum by reading the data section
 * once in chunks: on success every check mae_st_parse makes has passed. On failure *f is left
 * empty (safe to close). */
mae_status mae_st_open(const char *path, mae_st_file *f);
/* The same, but the data is not read here: mae_st_read_f32 hashes what it reads as it reads it,
 * in file order (a read behind an earlier one is not hashed), and mae_st_verify hashes whatever
 * was not read and compares. A reader that takes the tensors in file order, as mae_model_load
 * does with libmae's files, reads every byte once. Its results stand only once mae_st_verify
 * has said MAE_OK. */
mae_status mae_st_open_stream(const char *path, mae_st_file *f);
/* The checksum against the file's bytes: MAE_ERR_FORMAT "checksum mismatch" as mae_st_parse
 * says it, MAE_ERR_IO if they cannot be read. MAE_OK at once for a file without a checksum, a
 * file image parsed from memory and a file opened with mae_st_open (verified already). */
mae_status mae_st_verify(const mae_st_file *f);
/* Parses a file image in memory; buf must outlive f (not copied). */
mae_status mae_st_parse(const unsigned char *buf, size_t size, mae_st_file *f);
/* One file over n parsed parts whose data sections all lie inside buf (a sharded checkpoint read
 * into one buffer): every entry with its offsets made relative to buf, every part's metadata (a
 * key two parts give different values is MAE_ERR_FORMAT; the same value is kept once), indexed
 * and checked as mae_st_parse checks one file. On success out owns buf (freed by mae_st_close);
 * on failure out is empty and buf is still the caller's. The parts are left as they were. */
mae_status mae_st_merge(const mae_st_file *parts, int n, unsigned char *buf, size_t buf_size, mae_st_file *out);
void       mae_st_close(mae_st_file *f);

/* Binary searches: O(log n) per lookup, so that loading n tensors is O(n log n). */
const mae_st_entry *mae_st_find(const mae_st_file *f, const char *name);
const char         *mae_st_meta_get(const mae_st_file *f, const char *key);   /* NULL if absent */

/* Converts a tensor of any supported dtype to float32; count must equal e->count. From a file
 * opened from a path: MAE_ERR_IO naming the tensor when its bytes cannot be read. */
mae_status mae_st_read_f32(const mae_st_file *f, const mae_st_entry *e, float *dst, size_t count);

/* One float32 tensor to write. */
typedef struct mae_st_out {
    const char    *name;
    const float   *data;
    int            ndim;
    const int64_t *shape;
} mae_st_out;

/* Writes float32 tensors and string metadata to path through a temporary file in the same
 * directory, flushed and renamed: a crash never leaves a half-written file at path. Every file
 * written carries MAE_ST_CRC_KEY (first in __metadata__), which the reader verifies; a caller's
 * metadata must not use that key. */
mae_status mae_st_write(const char *path, const mae_st_out *tensors, int n,
                        const mae_st_meta *meta, int n_meta);
/* A tensor whose data is NULL gets its values from fetch(arg, i, dst) (i: its index in tensors)
 * into a scratch buffer the writer holds for one tensor at a time: a model whose weights exist
 * only packed is saved without a second copy of them (mae_st_write_as). */
typedef void (*mae_st_fetch)(const void *arg, int i, float *dst);
/* mae_st_write with the values stored as dtype: MAE_DT_F32, MAE_DT_F16 or MAE_DT_BF16,
 * rounded to nearest, ties to even (subnormals included; NaN stays NaN, inf stays inf). A finite
 * value that would round to infinity (|x| >= 65520 for F16, >= 0x1.fffp127 for BF16) stops the
 * write with MAE_ERR_UNSUPPORTED naming the tensor; whatever was at path stays as it was. */
mae_status mae_st_write_as(const char *path, const mae_st_out *tensors, int n, const mae_st_meta *meta,
                           int n_meta, int dtype, mae_st_fetch fetch, const void *arg);

#endif
