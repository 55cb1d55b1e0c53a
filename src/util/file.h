/* Whole files: the one reader for callers that want a file's bytes at once (the image and IDX
 * loaders), and the whole-buffer writer over the atomic writer (atomic_file.h). */
#ifndef MAE_FILE_H
#define MAE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include "util.h"

/* Reads a whole file into a mae_alloc'd buffer (fn names the caller in messages). */
mae_status mae_file_read(const char *fn, const char *path, uint8_t **data, size_t *size);
/* Writes n bytes to path atomically: a temporary file in the same directory, flushed, synced and
 * renamed over path. On failure path is untouched and the temporary file removed. */
mae_status mae_file_write_atomic(const char *fn, const char *path, const uint8_t *data, size_t n);

#endif
