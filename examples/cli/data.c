/* Fashion-MNIST loading and option parsing for `mae train` and `mae probe`. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"
#include "data.h"

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Tries "<dir>/<split>-<kind>" with and without ".gz". */
static mae_status load_idx(const char *dir, const char *split, const char *kind, uint8_t **data,
                           int *ndim, int64_t dims[4], char *path, size_t path_size)
{
    snprintf(path, path_size, "%s/%s-%s.gz", dir, split, kind);
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    else
        snprintf(path, path_size, "%s/%s-%s", dir, split, kind);
    return mae_idx_load(path, data, ndim, dims);
}

int cli_load_split(const char *cmd, const char *dir, const char *split, int want_labels, int max,
                   cli_images *out)
{
    char path[4096];
    uint8_t *px = NULL, *lb = NULL;
    int nd;
    int64_t dims[4];
    memset(out, 0, sizeof *out);
    mae_status s = load_idx(dir, split, "images-idx3-ubyte", &px, &nd, dims, path, sizeof path);
    if (s != MAE_OK)
        return cli_fail(cmd, path, s);
    if (nd != 3 || dims[1] < 1 || dims[2] < 1 || dims[1] > 4096 || dims[2] > 4096) {
        mae_image_free(px);
        cli_errorf(cmd, "%s: expected [n, h, w] images", path);
        return 1;
    }
    int n = (int)dims[0], h = (int)dims[1], w = (int)dims[2];
    if (max > 0 && n > max)
        n = max;
    if (want_labels) {
        int lnd;
        int64_t ldims[4];
        s = load_idx(dir, split, "labels-idx1-ubyte", &lb, &lnd, ldims, path, sizeof path);
        if (s != MAE_OK) {
            mae_image_free(px);
            return cli_fail(cmd, path, s);
        }
        if (lnd != 1 || ldims[0] != dims[0]) {
            mae_image_free(px);
            mae_image_free(lb);
            cli_errorf(cmd, "%s: labels do not match the images", path);
            return 1;
        }
    }
    const float mean[1] = MAE_FASHION_MNIST_MEAN, stdv[1] = MAE_FASHION_MNIST_STD;
    out->x = malloc((size_t)n * (size_t)h * (size_t)w * sizeof(float));
    out->labels = want_labels ? malloc((size_t)n) : NULL;
    if (!out->x || (want_labels && !out->labels)) {
        mae_image_free(px);
        mae_image_free(lb);
        cli_images_free(out);
        cli_errorf(cmd, "out of memory for %d images", n);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        s = mae_image_to_input(px + (size_t)i * (size_t)(h * w), w, h, 1, 0, 1, h, w,
                               MAE_FILTER_BILINEAR, 0, mean, stdv, out->x + (size_t)i * (size_t)(h * w));
        if (s != MAE_OK)
            break;
    }
    if (want_labels)
        memcpy(out->labels, lb, (size_t)n);
    mae_image_free(px);
    mae_image_free(lb);
    if (s != MAE_OK) {
        cli_images_free(out);
        return cli_fail(cmd, "converting images", s);
    }
    out->n = n;
    out->h = h;
    out->w = w;
    return 0;
}

void cli_images_free(cli_images *im)
{
    free(im->x);
    free(im->labels);
    memset(im, 0, sizeof *im);
}
