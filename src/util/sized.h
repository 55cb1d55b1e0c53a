/* Caller structs versioned by size (mae_config, mae_train_config): a uint32_t struct_size comes
 * first and fields are only ever appended, so a caller built against an older or newer mae.h
 * passes a struct shorter or longer than the library's. These two copy exactly the bytes both
 * sides know. */
#ifndef MAE_SIZED_H
#define MAE_SIZED_H

#include <stddef.h>
#include "mae.h"

/* Reads the caller's struct `in` into `full` (full_size bytes, already holding the library's
 * defaults for fields the caller may lack): the first min(in's struct_size, full_size) bytes,
 * then full's struct_size = full_size. MAE_ERR_INVALID_ARG (message names fn) if in's
 * struct_size is below min_size, the size of the struct's first version. */
mae_status mae_sized_read(const char *fn, const void *in, void *full, size_t full_size, size_t min_size);

/* Writes the library's struct `full` into the caller's `out` of out_size bytes: the first
 * min(out_size, full_size) bytes, with out's struct_size = out_size. MAE_ERR_INVALID_ARG if
 * out_size is below min_size (at least the struct_size field itself). */
mae_status mae_sized_write(const char *fn, void *out, size_t out_size, const void *full, size_t full_size,
                           size_t min_size);

/* The struct_size field of a caller's struct. */
uint32_t mae_sized_size(const void *s);

#endif
