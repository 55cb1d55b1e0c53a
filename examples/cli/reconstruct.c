/* mae reconstruct: mask images, reconstruct them, and write the official demo's 4-panel grid. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

#define CMD "reconstruct"
#define MAX_IMAGES 256       /* one grid row each; more makes an unwieldy PNG */
#define DEFAULT_IDX_COUNT 8

typedef struct recon_opts {
    const char *model, *out;
    char **images;           /* the positional arguments after the model */
    int nimages;
    double ratio;            /* < 0: the model's */
    uint64_t seed;
    int scale;               /* 0: chosen from the image size */
    int precision;           /* MAE_PRECISION_* */
    cli_input_opts in;
} recon_opts;

static void usage(void)
{
    printf("usage: mae reconstruct MODEL.safetensors IMAGE... -o GRID.png [options]\n"
           "       mae reconstruct MODEL.safetensors --idx FILE [--first K] [--count N] -o GRID.png\n"
           "Masks each image, runs the model, prints each image's loss and writes the official\n"
           "demo's grid: one row per image, panels original | masked | reconstruction |\n"
           "reconstruction with the visible patches pasted back.\n"
           "Images: PNG, PPM or PGM of any size (centre-cropped and resized to the model's input),\n"
           "or --idx with an IDX file such as Fashion-MNIST's t10k-images-idx3-ubyte.gz.\n"
           "options:\n"
           "  -o, --output PATH  the grid PNG (required)\n"
           "  --mask-ratio R     fraction of patches removed, in [0, 1) (default: the model's)\n"
           "  --seed S           seed of the random masks (default 0)\n"
           "  --scale N          enlarge each panel N times, 1..16 (default: a panel >= 112 px)\n"
           "  --precision P      f32 | bf16: the linear layers in bfloat16 with float32 sums,\n"
           "                     weights held in half the memory (default f32; docs/PRECISION.md)\n"
           "  --norm NAME        imagenet | fashion-mnist | none (default: fashion-mnist for\n"
           "                     1-channel models, imagenet for 3-channel ones)\n"
           "  --filter NAME      bicubic | bilinear resampling (default bicubic)\n"
           "  --idx FILE         take the images from an IDX file instead of image files\n"
           "  --first K          first image of the IDX file to use (default 0)\n"
           "  --count N          how many IDX images (default %d, at most %d)\n",
           DEFAULT_IDX_COUNT, MAX_IMAGES);
}

static int parse(int argc, char **argv, recon_opts *o)
{
    memset(o, 0, sizeof *o);
    o->ratio = -1;
    cli_input_opts_init(&o->in);
    o->images = malloc((size_t)argc * sizeof *o->images);
    if (!o->images)
        return cli_errorf(CMD, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_input_option(CMD, argc, argv, &i, &o->in);
        if (r >= 0) {
            if (r)
                return r;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!(o->out = cli_arg_value(CMD, argc, argv, &i)))
                return 2;
        } else if (strcmp(a, "--mask-ratio") == 0) {
            if ((r = cli_arg_double(CMD, argc, argv, &i, 0, 1, 1, &o->ratio)))
                return r;
        } else if (strcmp(a, "--seed") == 0) {
            if ((r = cli_arg_u64(CMD, argc, argv, &i, &o->seed)))
                return r;
        } else if (strcmp(a, "--scale") == 0) {
            if ((r = cli_arg_int(CMD, argc, argv, &i, 1, 16, &o->scale)))
                return r;
        } else if (strcmp(a, "--precision") == 0) {
            if ((r = cli_arg_precision(CMD, argc, argv, &i, &o->precision)))
                return r;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_errorf(CMD, "unknown option '%s'", a);
        } else if (!o->model) {
            o->model = a;
        } else {
            o->images[o->nimages++] = argv[i];
        }
    }
    if (!o->model)
        return cli_usage_error(CMD, "no model (the first argument is a .safetensors checkpoint)");
    if (!o->out)
        return cli_usage_error(CMD, "no output file (-o GRID.png)");
    return 0;
}

/* Smallest enlargement that makes the shorter panel side at least 112 px, within [1, 16]. */
static int auto_scale(int height, int width)
{
    int side = height < width ? height : width;
    int s = (112 + side - 1) / side;
    return s < 1 ? 1 : s > 16 ? 16 : s;
}

/* Buffers of one run, freed together. */
typedef struct recon_bufs {
    float *imgs, *pred, *mask, *loss;
} recon_bufs;

static void free_bufs(recon_bufs *b)
{
    free(b->imgs);
    free(b->pred);
    free(b->mask);
    free(b->loss);
}

/* The loss of each image alone. mae_forward reports the batch's mean over all removed patches;
 * re-running an image by itself with its own mask as the noise (stable argsort keeps the
 * visible patches first, in image order) removes exactly the same patches, so this is that
 * image's share: the batch loss is the mean of these (every image has the same number removed). */
static int per_image_loss(mae_ctx *c, const cli_inputs *in, int L, const recon_bufs *b)
{
    size_t per = (size_t)in->channels * (size_t)in->height * (size_t)in->width;
    for (int i = 0; i < in->count; i++) {
        mae_status s = mae_forward(c, b->imgs + (size_t)i * per, 1, b->mask + (size_t)i * (size_t)L,
                                   &b->loss[i], NULL, NULL, NULL);
        if (s != MAE_OK)
            return cli_fail(CMD, "forward (one image)", s);
    }
    return 0;
}

/* The grid PNG; *w, *h, *scale get its geometry. */
static int write_grid(const recon_opts *o, const mae_model *m, const cli_inputs *in,
                      const recon_bufs *b, int norm_pix, int *w, int *h, int *scale)
{
    *scale = o->scale ? o->scale : auto_scale(in->height, in->width);
    mae_pred_space space = norm_pix ? MAE_PRED_NORM_VISIBLE : MAE_PRED_PIXELS;
    uint8_t *rgb;
    mae_status s = mae_visualize(m, b->imgs, b->pred, b->mask, in->count, space, cli_inputs_mean(in),
                                 cli_inputs_std(in), *scale, &rgb, w, h);
    if (s != MAE_OK)
        return cli_fail(CMD, "grid", s);
    s = mae_png_write(o->out, rgb, *w, *h, 3, 0);
    mae_image_free(rgb);
    return s == MAE_OK ? 0 : cli_fail(CMD, o->out, s);
}

/* Why a loss is not finite, checked in the order that decides it: the loss is a mean over the
 * removed patches, so with none removed it is NaN whatever the values (as in the official code);
 * else a non-finite input pixel or weight spreads through the forward pass; else the pass
 * itself overflowed. */
typedef struct nan_why {
    int removed;          /* patches removed per image */
    const char *tensor;   /* the first tensor of the model holding a NaN or inf, or NULL */
} nan_why;

static const char *first_nonfinite_tensor(const mae_model *m)
{
    int n = 0;
    mae_model_tensor_count(m, &n);
    for (int i = 0; i < n; i++) {
        const char *name;
        const float *x;
        size_t count = 0;
        if (mae_model_tensor_name(m, i, &name) != MAE_OK ||
            mae_model_tensor(m, name, &x, &count, NULL, NULL) != MAE_OK)
            continue;
        for (size_t k = 0; k < count; k++)
            if (!isfinite(x[k]))
                return name;
    }
    return NULL;
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* A loss as text; a non-finite one says why instead of glibc's bare "-nan". img/n: the
 * input(s) it came from. */
static const char *loss_text(float loss, const nan_why *w, const float *img, size_t n, char *buf,
                             size_t size)
{
    if (isfinite(loss))
        snprintf(buf, size, "%.6f", (double)loss);
    else if (w->removed == 0)
        snprintf(buf, size, "nan (no patch removed)");
    else if (!all_finite(img, n))
        snprintf(buf, size, "%s (the input holds a non-finite value)", isnan(loss) ? "nan" : "inf");
    else if (w->tensor)
        snprintf(buf, size, "%s (the model's weight '%s' is not finite)", isnan(loss) ? "nan" : "inf",
                 w->tensor);
    else
        snprintf(buf, size, "%s (the forward pass overflowed)", isnan(loss) ? "nan" : "inf");
    return buf;
}

/* Printed once everything has worked, so that a failure leaves stdout empty. */
static void report(const recon_opts *o, const mae_model *m, const cli_inputs *in,
                   const recon_bufs *b, int L, int keep, float batch_loss, float ratio, int w,
                   int h, int scale)
{
    char text[160];
    size_t per = (size_t)in->channels * (size_t)in->height * (size_t)in->width;
    nan_why why = { L - keep, NULL };
    int finite = isfinite(batch_loss);
    for (int i = 0; i < in->count; i++)
        finite = finite && isfinite(b->loss[i]);
    if (!finite)
        why.tensor = first_nonfinite_tensor(m);
    for (int i = 0; i < in->count; i++) {
        char label[512];
        cli_inputs_label(in, i, label, sizeof label);
        printf("%s: loss %s\n", label, loss_text(b->loss[i], &why, b->imgs + (size_t)i * per, per,
                                                  text, sizeof text));
    }
    printf("batch loss %s (%d of %d patches removed per image, mask ratio %g, seed %llu, "
           "norm %s)\n", loss_text(batch_loss, &why, b->imgs, per * (size_t)in->count, text, sizeof text),
           L - keep, L, (double)ratio, (unsigned long long)o->seed, in->norm_name);
    printf("wrote %s: %d row%s, %dx%d px (scale %d; original | masked | reconstruction | "
           "reconstruction + visible)\n", o->out, in->count, in->count == 1 ? "" : "s", w, h, scale);
}

static int run(const recon_opts *o, const mae_model *m, const cli_inputs *in)
{
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_model_get_config(m, &cfg);
    int B = in->count, L, keep, P;
    float ratio = o->ratio >= 0 ? (float)o->ratio : cfg.mask_ratio, loss;
    mae_ctx *c;
    mae_status s = mae_ctx_create(m, B, &c);
    if (s != MAE_OK)
        return cli_fail(CMD, "context", s);
    if ((s = mae_ctx_set_mask_ratio(c, ratio)) != MAE_OK || (s = mae_ctx_set_seed(c, o->seed)) != MAE_OK ||
        (s = mae_ctx_get_dims(c, &L, &keep, &P)) != MAE_OK) {
        mae_ctx_free(c);
        return cli_fail(CMD, "context", s);
    }
    size_t per = (size_t)in->channels * (size_t)in->height * (size_t)in->width;
    recon_bufs b = { malloc((size_t)B * per * sizeof(float)),
                     malloc((size_t)B * (size_t)L * (size_t)P * sizeof(float)),
                     malloc((size_t)B * (size_t)L * sizeof(float)), malloc((size_t)B * sizeof(float)) };
    int r = 0;
    if (!b.imgs || !b.pred || !b.mask || !b.loss)
        r = cli_errorf(CMD, "out of memory for %d images", B);
    if (!r)
        r = cli_inputs_fill(CMD, in, 0, B, b.imgs);
    if (!r && (s = mae_forward(c, b.imgs, B, NULL, &loss, b.pred, b.mask, NULL)) != MAE_OK)
        r = cli_fail(CMD, "forward", s);
    if (!r)
        r = per_image_loss(c, in, L, &b);
    int w, h, scale;
    if (!r)
        r = write_grid(o, m, in, &b, cfg.norm_pix_loss, &w, &h, &scale);
    if (!r)
        report(o, m, in, &b, L, keep, loss, ratio, w, h, scale);
    free_bufs(&b);
    mae_ctx_free(c);
    return r;
}

int cmd_reconstruct(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    recon_opts o;
    int r = parse(argc, argv, &o);
    mae_model *m = NULL;
    if (!r)
        r = cli_load_model(CMD, o.model, o.precision, &m);
    int dec = 0;
    if (!r && (mae_model_has_decoder(m, &dec) != MAE_OK || !dec))
        r = cli_errorf(CMD, "%s: an encoder-only checkpoint cannot reconstruct (mae features "
                       "encodes with it)", o.model);
    cli_inputs in;
    if (!r) {
        r = cli_inputs_open(CMD, m, &o.in, o.images, o.nimages, DEFAULT_IDX_COUNT, MAX_IMAGES, &in);
        if (!r) {
            r = run(&o, m, &in);
            cli_inputs_close(&in);
        }
    }
    mae_model_free(m);
    free(o.images);
    return r;
}
