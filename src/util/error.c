/* Status strings and the thread-local last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "../os/os.h"
#include "util.h"

static MAE_THREAD_LOCAL char last_error[512];

mae_status mae_fail(mae_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

mae_status mae_fail_wrap(mae_status s, const char *fmt, ...)
{
    char prefix[96], inner[400];   /* together within last_error: no truncation warning */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t n = strlen(prefix);
    if (strncmp(last_error, prefix, n) == 0 && last_error[n] == ':')
        return s;   /* named already */
    size_t m = strlen(last_error);   /* copied: last_error is the output too */
    m = m < sizeof inner - 1 ? m : sizeof inner - 1;
    memcpy(inner, last_error, m);
    inner[m] = 0;
    snprintf(last_error, sizeof last_error, "%s: %s", prefix, inner);
    return s;
}

MAE_API const char *mae_last_error(void)
{
    return last_error;
}

MAE_API const char *mae_status_str(mae_status s)
{
    switch (s) {
    case MAE_OK: return "ok";
    case MAE_ERR_INVALID_ARG: return "invalid argument";
    case MAE_ERR_NOMEM: return "out of memory";
    case MAE_ERR_IO: return "I/O error";
    case MAE_ERR_FORMAT: return "malformed file";
    case MAE_ERR_SHAPE: return "shape mismatch";
    case MAE_ERR_UNSUPPORTED: return "unsupported";
    case MAE_ERR_STATE: return "bad state";
    case MAE_ERR_ABORTED: return "aborted";
    }
    return "unknown status";
}

MAE_API unsigned mae_version(void)
{
    return MAE_VERSION_NUMBER;
}

MAE_API const char *mae_version_string(void)
{
    return MAE_VERSION_STRING;
}
