/* Internal interface of the image module: the PNG/PNM/IDX codecs, channel conversion and
 * resampling (checksums, DEFLATE and the zlib/gzip containers are src/codec; byte buffers and
 * whole files src/util).
 * Every decoder treats its input as hostile: lengths are checked before use and output sizes are
 * bounded by what the input can actually produce. */
#ifndef MAE_IMAGE_H
#define MAE_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "mae.h"
#include "../codec/codec.h"
#include "../util/bytes.h"
#include "../util/file.h"

/* Images larger than this many pixels are refused (MAE_ERR_UNSUPPORTED), whatever the header
 * says: 2^28 pixels is 1 GiB as RGBA8. */
#define MAE_IMAGE_MAX_PIXELS ((uint64_t)1 << 28)
/* Largest IDX payload (and so gzip output) we will produce: 1 GiB. */
#define MAE_IDX_MAX_BYTES ((size_t)1 << 30)
/* What one decode may hold at once unless mae_image_set_limit says otherwise: 1 GiB. */
#define MAE_IMAGE_DEFAULT_LIMIT ((size_t)1 << 30)

/* The current decode memory limit (load.c), and a check of a decode's need against it:
 * MAE_ERR_UNSUPPORTED naming what (e.g. "PNG: a 300 x 200 image") when need is larger. */
size_t     mae_image_limit(void);
mae_status mae_image_check_limit(const char *what, size_t need);

/* ---- pixel buffers (pixels.c) --------------------------------------------------------------- */

/* A decoded 8-bit image, rows packed (stride = w * channels). */
typedef struct mae_raw_image {
    uint8_t *pixels;
    int w, h, channels;
} mae_raw_image;

/* Checks the arguments that describe a caller's pixel buffer and resolves stride 0 to
 * w * channels. fn names the public function in messages. */
mae_status mae_pixels_check(const char *fn, const void *pixels, int w, int h, int channels,
                            ptrdiff_t *stride);
/* Copies a w x h image between channel counts (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA): gray is
 * replicated to RGB, RGB becomes gray by the ITU-R 601 luma (R 19595 + G 38470 + B 7471 + 2^15)
 * >> 16, a missing alpha becomes 255, an unwanted one is dropped. */
void mae_pixels_convert(const uint8_t *src, ptrdiff_t src_stride, int sc, uint8_t *dst,
                        ptrdiff_t dst_stride, int dc, int w, int h);
/* A packed copy with dc channels (mae_alloc'd). */
mae_status mae_pixels_copy(const uint8_t *src, ptrdiff_t src_stride, int sc, int w, int h, int dc,
                           uint8_t **out);

/* ---- codecs (png_read.c, png_write.c, pnm.c, idx.c) ----------------------------------------- */

/* PNG's Paeth predictor (filter type 4): of a (left), b (above), c (above left), the one nearest
 * to a + b - c, ties in that order. The reader and the writer use it. */
static inline int mae_png_paeth(int a, int b, int c)
{
    int p = a + b - c;
    int pa = p > a ? p - a : a - p, pb = p > b ? p - b : b - p, pc = p > c ? p - c : c - p;
    if (pa <= pb && pa <= pc)
        return a;
    return pb <= pc ? b : c;
}

int        mae_png_signature(const uint8_t *p, size_t n);   /* 1 if p starts with PNG's */
mae_status mae_png_decode(const uint8_t *p, size_t n, mae_raw_image *out);
/* Encodes 8-bit pixels (any stride) as a PNG file image appended to out. */
mae_status mae_png_encode_bytes(const uint8_t *pixels, int w, int h, int channels, ptrdiff_t stride,
                          mae_bytes *out);

int        mae_pnm_signature(const uint8_t *p, size_t n);   /* 1 if p starts with P1..P7 */
mae_status mae_pnm_decode(const uint8_t *p, size_t n, mae_raw_image *out);
mae_status mae_pnm_encode(const uint8_t *pixels, int w, int h, int channels, ptrdiff_t stride,
                          mae_bytes *out);

/* An IDX file image (plain or gzip) -> unsigned bytes with dims. */
mae_status mae_idx_decode(const uint8_t *p, size_t n, uint8_t **data, int *ndim, int64_t dims[4]);

/* ---- resampling (resize.c) ------------------------------------------------------------------ */

/* Fills out[c * plane + x] (the C channels of one row, plane floats apart) with row y of the
 * source image. */
typedef void (*mae_row_fn)(void *ctx, int y, float *out, size_t plane);

/* Resamples the box [x0,x1) x [y0,y1) (source pixel units, fractional allowed) of a C-channel
 * w x h float image, read row by row through row(), to dst [C,oh,ow] with Pillow's convolution
 * scheme: output pixel i samples at x0 + (i + 0.5) * scale, and on downscaling the filter is
 * stretched by the scale (antialiasing). filter is MAE_FILTER_*. No clamping. Only the rows the
 * box needs are read; memory is C * h * ow floats plus one row. Fails only when that cannot be
 * allocated, before dst is touched. */
mae_status mae_resample(mae_row_fn row, void *ctx, int C, int h, int w, double x0, double y0,
                        double x1, double y1, int filter, float *dst, int oh, int ow);

/* ---- tensors and predictions (convert.c) ---------------------------------------------------- */

/* Unchecked core of mae_input_to_image: img [C,H,W] -> 8-bit pixels with oc channels. */
void mae_tensor_to_pixels(const float *img, int C, int H, int W, const float *mean, const float *std,
                          uint8_t *pixels, ptrdiff_t stride, int oc);
/* mean/std: NULL, or n finite values with std != 0. */
mae_status mae_norm_check(const char *fn, const float *mean, const float *std, int n);
/* The argument checks shared by mae_output_to_image and mae_visualize. */
mae_status mae_pred_check(const char *fn, const mae_model *m, const float *pred, const float *img,
                          const float *mask, mae_pred_space space);
/* One allocation holding the scratch of mae_pred_to_tensor (stats: 4 L doubles, patches: L P
 * floats) and extra_floats more for the caller. Free with mae_free(*stats). */
mae_status mae_pred_alloc(const mae_model *m, size_t extra_floats, double **stats, float **patches,
                          float **extra);
/* One image's prediction [L,P] -> normalized image tensor out [C,H,W], un-normalized per patch
 * as space says (img [C,H,W] and mask [L] as mae_output_to_image needs them). Fails only for
 * MAE_PRED_NORM_VISIBLE without a visible patch. */
mae_status mae_pred_to_tensor(const mae_model *m, const float *pred, const float *img, const float *mask,
                              mae_pred_space space, double *stats, float *patches, float *out);

#endif
