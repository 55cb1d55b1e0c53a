/* The public file functions: image and IDX loading (file or memory), PNG and PNM writing, and the
 * decode memory limit. */
#include "image.h"
#include "../os/os.h"
#include "../util/util.h"

/* 0: the default. Atomic: a limit set on one thread while another decodes is either seen or not. */
static mae_atomic_size decode_limit;

MAE_API mae_status mae_image_set_limit(size_t max_bytes)
{
    mae_atomic_size_store(&decode_limit, max_bytes);
    return MAE_OK;
}

MAE_API size_t mae_image_get_limit(void)
{
    return mae_image_limit();
}

size_t mae_image_limit(void)
{
    size_t v = mae_atomic_size_load(&decode_limit);
    return v ? v : MAE_IMAGE_DEFAULT_LIMIT;
}

mae_status mae_image_check_limit(const char *what, size_t need)
{
    size_t limit = mae_image_limit();
    if (need > limit)
        return mae_fail(MAE_ERR_UNSUPPORTED, "%s needs %zu bytes to decode, more than the limit of %zu "
                        "(mae_image_set_limit)", what, need, limit);
    return MAE_OK;
}

MAE_API void mae_image_free(void *buffer)
{
    mae_free(buffer);
}

MAE_API mae_status mae_image_load_memory(const void *data, size_t size, int desired_channels,
                                         uint8_t **pixels, int *width, int *height, int *channels)
{
    const char *fn = "mae_image_load";
    if (!data || !pixels || !width || !height || !channels)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: data, pixels, width, height and channels must not be NULL", fn);
    if (desired_channels < 0 || desired_channels > 4)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: desired_channels %d (0 = as stored, or 1..4)", fn, desired_channels);
    const uint8_t *p = data;
    mae_raw_image img = { NULL, 0, 0, 0 };
    mae_status s;
    if (mae_png_signature(p, size))
        s = mae_png_decode(p, size, &img);
    else if (mae_pnm_signature(p, size))
        s = mae_pnm_decode(p, size, &img);
    else
        return mae_fail(MAE_ERR_FORMAT, "%s: not a PNG, PGM or PPM file", fn);
    if (s != MAE_OK)
        return s;
    if (desired_channels && desired_channels != img.channels) {
        uint8_t *conv = NULL;
        /* the decoded and the converted pixels are held together (both below 2^30 * 4 bytes) */
        size_t px = (size_t)img.w * (size_t)img.h;
        s = mae_image_check_limit("converting the channels of the image", px * (size_t)(img.channels + desired_channels));
        if (s != MAE_OK) {
            mae_free(img.pixels);
            return s;
        }
        s = mae_pixels_copy(img.pixels, (ptrdiff_t)img.w * img.channels, img.channels, img.w, img.h,
                            desired_channels, &conv);
        mae_free(img.pixels);
        if (s != MAE_OK)
            return s;
        img.pixels = conv;
        img.channels = desired_channels;
    }
    *pixels = img.pixels;
    *width = img.w;
    *height = img.h;
    *channels = img.channels;
    return MAE_OK;
}

MAE_API mae_status mae_image_load(const char *path, int desired_channels, uint8_t **pixels,
                                  int *width, int *height, int *channels)
{
    if (!path || !pixels || !width || !height || !channels)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_image_load: path, pixels, width, height and channels must not be NULL");
    if (desired_channels < 0 || desired_channels > 4)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_image_load: desired_channels %d (0 = as stored, or 1..4)", desired_channels);
    uint8_t *data = NULL;
    size_t size = 0;
    mae_status s = mae_file_read("mae_image_load", path, &data, &size);
    if (s != MAE_OK)
        return s;
    s = mae_image_load_memory(data ? (const void *)data : "", size, desired_channels, pixels, width,
                              height, channels);
    mae_free(data);
    return s;
}

/* Checks an image to encode and runs enc on it into a growable buffer. */
typedef mae_status (*encoder_fn)(const uint8_t *, int, int, int, ptrdiff_t, mae_bytes *);

static mae_status encode(const char *fn, encoder_fn enc, const uint8_t *pixels, int w, int h, int channels,
                         ptrdiff_t stride, mae_bytes *out)
{
    mae_status s = mae_pixels_check(fn, pixels, w, h, channels, &stride);
    if (s != MAE_OK)
        return s;
    mae_bytes_init(out, SIZE_MAX);
    s = enc(pixels, w, h, channels, stride, out);
    if (s != MAE_OK)
        mae_bytes_free(out);
    return s;
}

MAE_API mae_status mae_png_encode(const uint8_t *pixels, int width, int height, int channels,
                                  ptrdiff_t stride, uint8_t **png, size_t *size)
{
    if (!png || !size)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_png_encode: %s is NULL", !png ? "png" : "size");
    mae_bytes b;
    mae_status s = encode("mae_png_encode", mae_png_encode_bytes, pixels, width, height, channels, stride, &b);
    if (s != MAE_OK)
        return s;
    *png = b.data;
    *size = b.size;
    return MAE_OK;
}

static mae_status write_file(const char *fn, encoder_fn enc, const char *path, const uint8_t *pixels,
                             int w, int h, int channels, ptrdiff_t stride)
{
    if (!path)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: path is NULL", fn);
    mae_bytes b;
    mae_status s = encode(fn, enc, pixels, w, h, channels, stride, &b);
    if (s != MAE_OK)
        return s;
    s = mae_file_write_atomic(fn, path, b.data, b.size);
    mae_bytes_free(&b);
    return s;
}

MAE_API mae_status mae_png_write(const char *path, const uint8_t *pixels, int width, int height,
                                 int channels, ptrdiff_t stride)
{
    return write_file("mae_png_write", mae_png_encode_bytes, path, pixels, width, height, channels, stride);
}

MAE_API mae_status mae_pnm_write(const char *path, const uint8_t *pixels, int width, int height,
                                 int channels, ptrdiff_t stride)
{
    if (channels != 1 && channels != 3 && channels >= 1 && channels <= 4)
        return mae_fail(MAE_ERR_UNSUPPORTED, "mae_pnm_write: %d channels (PGM takes 1, PPM 3)", channels);
    return write_file("mae_pnm_write", mae_pnm_encode, path, pixels, width, height, channels, stride);
}

MAE_API mae_status mae_idx_load_memory(const void *buf, size_t size, uint8_t **data, int *ndim,
                                       int64_t dims[4])
{
    if (!buf || !data || !ndim || !dims)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_idx_load: buf, data, ndim and dims must not be NULL");
    return mae_idx_decode(buf, size, data, ndim, dims);
}

MAE_API mae_status mae_idx_load(const char *path, uint8_t **data, int *ndim, int64_t dims[4])
{
    if (!path || !data || !ndim || !dims)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_idx_load: path, data, ndim and dims must not be NULL");
    uint8_t *file = NULL;
    size_t size = 0;
    mae_status s = mae_file_read("mae_idx_load", path, &file, &size);
    if (s != MAE_OK)
        return s;
    s = mae_idx_decode(file ? file : (const uint8_t *)"", size, data, ndim, dims);
    mae_free(file);
    return s;
}
