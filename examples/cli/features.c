/* mae features: the encoder's output for whole (unmasked) images, pooled, as .npy or .safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

#define CMD "features"
#define MAX_IMAGES (1 << 24)

typedef enum pool_kind { POOL_CLS, POOL_MEAN, POOL_CLS_MEAN, POOL_TOKENS } pool_kind;

typedef struct feat_opts {
    const char *model, *out;
    char **images;
    int nimages;
    pool_kind pool;
    int batch;
    int precision;           /* MAE_PRECISION_* */
    cli_input_opts in;
} feat_opts;

static void usage(void)
{
    printf("usage: mae features MODEL.safetensors IMAGE... -o OUT.npy|OUT.safetensors [options]\n"
           "       mae features MODEL.safetensors --idx FILE [--first K] [--count N] -o OUT.npy\n"
           "Runs the encoder on whole images (mask ratio 0) and writes one row of features per\n"
           "image: float32, as .npy or as .safetensors with one tensor named \"features\".\n"
           "Encoder-only checkpoints work too.\n"
           "options:\n"
           "  -o, --output PATH  .npy or .safetensors file (required)\n"
           "  --pool KIND        cls: the cls token [N, D]; mean: mean of the patch tokens [N, D];\n"
           "                     cls+mean: both [N, 2D] (default); tokens: all [N, 1+L, D] with\n"
           "                     the patch tokens in image order (row by row)\n"
           "  --batch N          images per forward pass (default 64)\n"
           "  --precision P      f32 | bf16: the linear layers in bfloat16 with float32 sums,\n"
           "                     weights held in half the memory (default f32; docs/PRECISION.md)\n"
           "  --norm NAME        imagenet | fashion-mnist | none (default: fashion-mnist for\n"
           "                     1-channel models, imagenet for 3-channel ones)\n"
           "  --filter NAME      bicubic | bilinear resampling (default bicubic)\n"
           "  --idx FILE         take the images from an IDX file instead of image files\n"
           "  --first K          first image of the IDX file to use (default 0)\n"
           "  --count N          how many IDX images (default: all from --first on)\n");
}

static int parse_pool(const char *v, pool_kind *out)
{
    static const char *names[] = { "cls", "mean", "cls+mean", "tokens" };
    for (int k = 0; k < 4; k++)
        if (strcmp(v, names[k]) == 0) {
            *out = (pool_kind)k;
            return 0;
        }
    return cli_usage_errorf(CMD, "--pool: '%s' is not cls, mean, cls+mean or tokens", v);
}

static int parse(int argc, char **argv, feat_opts *o)
{
    memset(o, 0, sizeof *o);
    o->pool = POOL_CLS_MEAN;
    o->batch = 64;
    cli_input_opts_init(&o->in);
    o->images = malloc((size_t)argc * sizeof *o->images);
    if (!o->images)
        return cli_errorf(CMD, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = cli_input_option(CMD, argc, argv, &i, &o->in);
        if (r >= 0) {
            if (r)
                return r;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!(o->out = cli_arg_value(CMD, argc, argv, &i)))
                return 2;
        } else if (strcmp(a, "--pool") == 0) {
            if (!(v = cli_arg_value(CMD, argc, argv, &i)) || parse_pool(v, &o->pool))
                return 2;
        } else if (strcmp(a, "--batch") == 0) {
            if ((r = cli_arg_int(CMD, argc, argv, &i, 1, 4096, &o->batch)))
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
        return cli_usage_error(CMD, "no output file (-o OUT.npy or OUT.safetensors)");
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int write_out(const char *path, const float *data, const long long *shape, int ndim)
{
    return ends_with(path, ".safetensors") ? cli_write_safetensors(CMD, path, "features", data, shape, ndim)
                                           : cli_write_npy(CMD, path, data, shape, ndim);
}

/* Encodes all images, batch by batch, into out [N, row] with mae_embed (tokens in image order;
 * the library pools cls, mean and tokens; cls+mean is its two pools side by side). */
static int encode(const feat_opts *o, const mae_model *m, const cli_inputs *in, int L, int D, float *out,
                  size_t row)
{
    int bmax = o->batch < in->count ? o->batch : in->count;
    size_t per = (size_t)in->channels * (size_t)in->height * (size_t)in->width;
    (void)L;
    mae_ctx *c;
    mae_status s = mae_ctx_create(m, bmax, &c);
    if (s != MAE_OK)
        return cli_fail(CMD, "context", s);
    float *imgs = malloc((size_t)bmax * per * sizeof(float));
    float *both = o->pool == POOL_CLS_MEAN ? malloc((size_t)2 * bmax * D * sizeof(float)) : NULL;
    int r = (!imgs || (o->pool == POOL_CLS_MEAN && !both)) ? cli_errorf(CMD, "out of memory for a batch of %d", bmax) : 0;
    mae_pool pool = o->pool == POOL_MEAN ? MAE_POOL_MEAN : o->pool == POOL_TOKENS ? MAE_POOL_TOKENS : MAE_POOL_CLS;
    for (int start = 0; !r && start < in->count; start += bmax) {
        int b = in->count - start < bmax ? in->count - start : bmax;
        float *dst = out + (size_t)start * row;
        r = cli_inputs_fill(CMD, in, start, b, imgs);
        if (!r && o->pool != POOL_CLS_MEAN && (s = mae_embed(c, imgs, b, pool, dst)) != MAE_OK)
            r = cli_fail(CMD, "embed", s);
        if (!r && o->pool == POOL_CLS_MEAN) {
            float *cls = both, *mean = both + (size_t)bmax * D;
            if ((s = mae_embed(c, imgs, b, MAE_POOL_CLS, cls)) != MAE_OK ||
                (s = mae_embed(c, imgs, b, MAE_POOL_MEAN, mean)) != MAE_OK)
                r = cli_fail(CMD, "embed", s);
            for (int i = 0; !r && i < b; i++) {
                memcpy(dst + (size_t)i * row, cls + (size_t)i * D, (size_t)D * sizeof *dst);
                memcpy(dst + (size_t)i * row + D, mean + (size_t)i * D, (size_t)D * sizeof *dst);
            }
        }
    }
    free(imgs);
    free(both);
    mae_ctx_free(c);
    return r;
}

static int run(const feat_opts *o, const mae_model *m, const cli_inputs *in)
{
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_model_get_config(m, &cfg);
    int D = cfg.embed_dim, p = cfg.patch_size;
    int L = (in->height / p) * (in->width / p);
    long long shape[3] = { in->count, D, 0 };
    int ndim = 2;
    if (o->pool == POOL_CLS_MEAN)
        shape[1] = 2LL * D;
    if (o->pool == POOL_TOKENS) {
        shape[1] = 1 + L;
        shape[2] = D;
        ndim = 3;
    }
    size_t row = (size_t)shape[1] * (ndim == 3 ? (size_t)D : 1);
    float *out = malloc((size_t)in->count * row * sizeof(float));
    if (!out)
        return cli_errorf(CMD, "out of memory for %d x %zu features", in->count, row);
    int r = encode(o, m, in, L, D, out, row);
    if (!r)
        r = write_out(o->out, out, shape, ndim);
    free(out);
    if (r)
        return r;
    printf("wrote %s: %d image%s, shape [", o->out, in->count, in->count == 1 ? "" : "s");
    for (int d = 0; d < ndim; d++)
        printf("%lld%s", shape[d], d + 1 < ndim ? ", " : "");
    printf("] float32, norm %s\n", in->norm_name);
    return 0;
}

int cmd_features(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    feat_opts o;
    int r = parse(argc, argv, &o);
    if (!r && !ends_with(o.out, ".npy") && !ends_with(o.out, ".safetensors"))
        r = cli_usage_errorf(CMD, "-o %s: the name must end in .npy or .safetensors", o.out);
    mae_model *m = NULL;
    if (!r)
        r = cli_load_model(CMD, o.model, o.precision, &m);
    cli_inputs in;
    if (!r) {
        r = cli_inputs_open(CMD, m, &o.in, o.images, o.nimages, 0, MAX_IMAGES, &in);
        if (!r) {
            r = run(&o, m, &in);
            cli_inputs_close(&in);
        }
    }
    mae_model_free(m);
    free(o.images);
    return r;
}
