/* Images in for `mae reconstruct` and `mae features`: image files or an IDX file, turned into the
 * model's normalized input a batch at a time (so a long list of photos never sits in memory). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

void cli_input_opts_init(cli_input_opts *o)
{
    memset(o, 0, sizeof *o);
    o->count = -1;
    o->filter = MAE_FILTER_BICUBIC;
}

int cli_input_option(const char *cmd, int argc, char **argv, int *i, cli_input_opts *o)
{
    const char *a = argv[*i], *v;
    if (strcmp(a, "--idx") == 0) {
        o->idx = cli_arg_value(cmd, argc, argv, i);
        return o->idx ? 0 : 2;
    }
    if (strcmp(a, "--first") == 0)
        return cli_arg_long(cmd, argc, argv, i, 0, 1L << 30, &o->first);
    if (strcmp(a, "--count") == 0)
        return cli_arg_long(cmd, argc, argv, i, 1, 1L << 30, &o->count);
    if (strcmp(a, "--norm") == 0) {
        if (!(v = cli_arg_value(cmd, argc, argv, i)))
            return 2;
        if (strcmp(v, "imagenet") && strcmp(v, "fashion-mnist") && strcmp(v, "none"))
            return cli_usage_errorf(cmd, "--norm: '%s' is not imagenet, fashion-mnist or none", v);
        o->norm = v;
        return 0;
    }
    if (strcmp(a, "--filter") == 0) {
        if (!(v = cli_arg_value(cmd, argc, argv, i)))
            return 2;
        if (strcmp(v, "bicubic") == 0)
            o->filter = MAE_FILTER_BICUBIC;
        else if (strcmp(v, "bilinear") == 0)
            o->filter = MAE_FILTER_BILINEAR;
        else
            return cli_usage_errorf(cmd, "--filter: '%s' is not bicubic or bilinear", v);
        return 0;
    }
    return -1;
}

/* The mean/std of --norm for a C-channel model; the Fashion-MNIST pair is replicated to every
 * channel, ImageNet's is per RGB channel and so needs C == 3. */
static int set_norm(const char *cmd, const char *norm, cli_inputs *in)
{
    static const float in_mean[3] = MAE_IMAGENET_MEAN, in_std[3] = MAE_IMAGENET_STD;
    static const float fm_mean[1] = MAE_FASHION_MNIST_MEAN, fm_std[1] = MAE_FASHION_MNIST_STD;
    int C = in->channels;
    if (!norm)
        norm = C == 1 ? "fashion-mnist" : C == 3 ? "imagenet" : "none";
    in->norm_name = norm;
    in->normalize = strcmp(norm, "none") != 0;
    if (strcmp(norm, "imagenet") == 0 && C != 3)
        return cli_usage_errorf(cmd, "--norm imagenet needs a 3-channel model (this one has %d)", C);
    for (int c = 0; c < C; c++) {
        int rgb = strcmp(norm, "imagenet") == 0;
        in->mean[c] = rgb ? in_mean[c] : fm_mean[0];
        in->std[c] = rgb ? in_std[c] : fm_std[0];
    }
    return 0;
}

/* Loads the IDX file: [n, h, w] gray or [n, h, w, c] with c in 1..4 channels. */
static int open_idx(const char *cmd, const cli_input_opts *o, int default_count, int max_count,
                    cli_inputs *in)
{
    int nd;
    int64_t d[4];
    mae_status s = mae_idx_load(o->idx, &in->idx, &nd, d);
    if (s != MAE_OK)
        return cli_fail(cmd, o->idx, s);
    if (!((nd == 3) || (nd == 4 && d[3] >= 1 && d[3] <= 4)) || d[1] < 1 || d[2] < 1 ||
        d[1] > 65536 || d[2] > 65536)
        return cli_errorf(cmd, "%s: expected images [n, h, w] or [n, h, w, channels]", o->idx);
    in->idx_path = o->idx;
    in->idx_h = (int)d[1];
    in->idx_w = (int)d[2];
    in->idx_c = nd == 4 ? (int)d[3] : 1;
    if (o->first >= d[0])
        return cli_errorf(cmd, "%s: --first %ld, but the file has %lld images", o->idx, o->first,
                          (long long)d[0]);
    long left = (long)(d[0] - o->first), count = o->count;
    if (count < 0)
        count = default_count > 0 && default_count < left ? default_count : left;
    if (count > left)
        return cli_errorf(cmd, "%s: --first %ld --count %ld, but the file has %lld images",
                          o->idx, o->first, count, (long long)d[0]);
    if (count > max_count)
        return cli_usage_errorf(cmd, "%ld images are more than this command takes (%d)", count,
                                max_count);
    in->first = o->first;
    in->count = (int)count;
    return 0;
}

int cli_inputs_open(const char *cmd, const mae_model *m, const cli_input_opts *o,
                    char *const *paths, int npaths, int default_count, int max_count,
                    cli_inputs *in)
{
    memset(in, 0, sizeof *in);
    mae_config c;
    c.struct_size = sizeof c;
    mae_status s = mae_model_get_config(m, &c);
    if (s != MAE_OK)
        return cli_fail(cmd, "model config", s);
    in->channels = c.in_chans;
    in->height = c.img_height > 0 ? c.img_height : c.img_size;
    in->width = c.img_width > 0 ? c.img_width : c.img_size;
    in->filter = o->filter;
    if (in->channels < 1 || in->channels > 4)
        return cli_errorf(cmd, "a %d-channel model takes no image files (1 to 4 channels)", in->channels);
    int r = set_norm(cmd, o->norm, in);
    if (r)
        return r;
    if (o->idx && npaths > 0)
        return cli_usage_error(cmd, "give image files or --idx, not both");
    if (!o->idx && (o->first != 0 || o->count >= 0))
        return cli_usage_error(cmd, "--first and --count go with --idx");
    if (o->idx) {
        r = open_idx(cmd, o, default_count, max_count, in);
        if (r)
            cli_inputs_close(in);
        return r;
    }
    if (npaths == 0)
        return cli_usage_error(cmd, "no images (give image files or --idx FILE)");
    if (npaths > max_count)
        return cli_usage_errorf(cmd, "%d images are more than this command takes (%d)", npaths,
                                max_count);
    in->paths = paths;
    in->count = npaths;
    return 0;
}

const float *cli_inputs_mean(const cli_inputs *in)
{
    return in->normalize ? in->mean : NULL;
}

const float *cli_inputs_std(const cli_inputs *in)
{
    return in->normalize ? in->std : NULL;
}

/* One image file -> out [C, H, W]: loaded with the model's channel count, centre-cropped. */
static int fill_file(const char *cmd, const cli_inputs *in, const char *path, float *out)
{
    uint8_t *px;
    int w, h, ch;
    mae_status s = mae_image_load(path, in->channels, &px, &w, &h, &ch);
    if (s != MAE_OK)
        return cli_fail(cmd, path, s);
    s = mae_image_to_input(px, w, h, ch, 0, in->channels, in->height, in->width, in->filter, 1,
                           cli_inputs_mean(in), cli_inputs_std(in), out);
    mae_image_free(px);
    return s == MAE_OK ? 0 : cli_fail(cmd, path, s);
}

int cli_inputs_fill(const char *cmd, const cli_inputs *in, int start, int n, float *out)
{
    size_t per = (size_t)in->channels * (size_t)in->height * (size_t)in->width;
    size_t idx_per = (size_t)in->idx_h * (size_t)in->idx_w * (size_t)in->idx_c;
    for (int i = 0; i < n; i++) {
        int k = start + i;
        if (!in->idx) {
            if (fill_file(cmd, in, in->paths[k], out + (size_t)i * per))
                return 1;
            continue;
        }
        const uint8_t *px = in->idx + (size_t)(in->first + k) * idx_per;
        mae_status s = mae_image_to_input(px, in->idx_w, in->idx_h, in->idx_c, 0, in->channels,
                                          in->height, in->width, in->filter, 1,
                                          cli_inputs_mean(in), cli_inputs_std(in),
                                          out + (size_t)i * per);
        if (s != MAE_OK) {
            char label[512];
            cli_inputs_label(in, k, label, sizeof label);
            return cli_fail(cmd, label, s);
        }
    }
    return 0;
}

void cli_inputs_label(const cli_inputs *in, int i, char *buf, size_t size)
{
    if (in->idx)
        snprintf(buf, size, "%s[%ld]", in->idx_path, in->first + i);
    else
        snprintf(buf, size, "%s", in->paths[i]);
}

void cli_inputs_close(cli_inputs *in)
{
    mae_image_free(in->idx);
    memset(in, 0, sizeof *in);
}
