/* Public whole-file writing: argument checks, then the atomic writer the image codecs use. */
#include <stdint.h>
#include "../image/image.h"
#include "../util/util.h"

MAE_API mae_status mae_file_write(const char *path, const void *data, size_t size)
{
    if (!path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_file_write: path is NULL");
    if (!data && size > 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_file_write: data is NULL with size %zu", size);
    static const uint8_t empty[1] = { 0 };   /* never hand the writer a NULL buffer */
    return mae_file_write_atomic("mae_file_write", path, data ? (const uint8_t *)data : empty, size);
}
