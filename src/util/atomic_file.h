/* The one atomic file writer: every file the library writes (safetensors, checkpoints, PNG, PNM)
 * goes through it, so that a failed or killed write never leaves a half-written file behind. */
#ifndef MAE_ATOMIC_FILE_H
#define MAE_ATOMIC_FILE_H

#include <stdio.h>
#include "mae.h"

/* Writes the content into f. Return MAE_OK when done; MAE_ERR_IO when a stream operation failed
 * (the writer then reports it with the system's error text); any other status after recording
 * its own message with mae_fail. The callback may fseek within what it wrote (e.g. to patch a
 * checksum in); the writer checks ferror and flushes afterwards. */
typedef mae_status (*mae_write_fn)(FILE *f, void *arg);

/* Writes path atomically: a temporary file "<path>.tmp.<pid>.<n>" created exclusively in the
 * same directory (so that the rename stays within one file system), filled by write, flushed
 * (fflush, then fsync / FlushFileBuffers), renamed over path, and the directory synced. On any
 * failure path is untouched and the temporary file removed. fn names the caller in messages (NULL: messages start with the path). */
mae_status mae_atomic_write(const char *fn, const char *path, mae_write_fn write, void *arg);

#endif
