/* mae classify: a classifier file (mae_classifier_load) on image files, with the official
 * evaluation transform: the shorter side resized to side / crop_pct (224 -> 256, bicubic), the
 * centre cropped to the model's size, normalized. Prints the top classes, or with --json one
 * object per image with every logit printed round-trip exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

typedef struct classify_opts {
    const char *model, *norm;
    int top, json, threads, precision;   /* precision: MAE_PRECISION_* */
    double crop_pct;
    mae_filter filter;
    char **images;
    int nimages;
} classify_opts;

static void usage(void)
{
    printf("usage: mae classify CLASSIFIER.safetensors IMAGE... [options]\n"
           "Classifies PNG/PGM/PPM images with a classifier file (a fine-tuned model: official\n"
           "fine-tuned or Hugging Face ViTForImageClassification names, see docs/FORMAT.md).\n"
           "Each image: shorter side resized to side/crop-pct (bicubic), centre crop to the model's\n"
           "size, normalized (torchvision's Resize + CenterCrop + Normalize of the official eval).\n"
           "options (defaults in brackets):\n"
           "  --top K         classes to print per image [5]\n"
           "  --json          one JSON object per line: image, top ([{label, index, probability}]),\n"
           "                  logits (every class, %%.9g: float32 round-trip exact)\n"
           "  --crop-pct X    fraction of the resized shorter side kept, in (0, 1] [0.875]\n"
           "                  (1: the largest centred square, no margin)\n"
           "  --norm N        imagenet | fashion-mnist | none [imagenet for 3 channels,\n"
           "                  fashion-mnist for 1]\n"
           "  --filter F      nearest | bilinear | bicubic [bicubic]\n"
           "  --threads N     [all cores]\n"
           "  --precision P   f32 | bf16: the encoder's linears and the head in bfloat16 with\n"
           "                  float32 sums (mae_classifier_set_precision) [f32]\n");
}

static int parse(int argc, char **argv, classify_opts *o)
{
    memset(o, 0, sizeof *o);
    o->top = 5;
    o->crop_pct = 0.875;
    o->filter = MAE_FILTER_BICUBIC;
    o->images = calloc((size_t)argc, sizeof *o->images);
    if (!o->images)
        return cli_errorf("classify", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *f = NULL;
        int r = 0;
        if (!strcmp(a, "--top")) r = cli_arg_int("classify", argc, argv, &i, 1, 1000000, &o->top);
        else if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--crop-pct")) r = cli_arg_double("classify", argc, argv, &i, 1e-3, 1, 0, &o->crop_pct);
        else if (!strcmp(a, "--norm")) r = cli_arg_str("classify", argc, argv, &i, &o->norm);
        else if (!strcmp(a, "--threads")) r = cli_arg_int("classify", argc, argv, &i, 1, 256, &o->threads);
        else if (!strcmp(a, "--precision")) r = cli_arg_precision("classify", argc, argv, &i, &o->precision);
        else if (!strcmp(a, "--filter")) {
            if ((r = cli_arg_str("classify", argc, argv, &i, &f)) == 0) {
                if (!strcmp(f, "nearest")) o->filter = MAE_FILTER_NEAREST;
                else if (!strcmp(f, "bilinear")) o->filter = MAE_FILTER_BILINEAR;
                else if (!strcmp(f, "bicubic")) o->filter = MAE_FILTER_BICUBIC;
                else r = cli_usage_errorf("classify", "--filter '%s' is not nearest, bilinear or bicubic", f);
            }
        } else if (a[0] == '-' && a[1])
            r = cli_usage_errorf("classify", "unknown option '%s'", a);
        else if (!o->model)
            o->model = a;
        else
            o->images[o->nimages++] = argv[i];
        if (r)
            return r;
    }
    if (!o->model || o->nimages == 0)
        return cli_usage_error("classify", "needs a classifier file and at least one image");
    if (o->norm && strcmp(o->norm, "imagenet") && strcmp(o->norm, "fashion-mnist") && strcmp(o->norm, "none"))
        return cli_usage_errorf("classify", "--norm '%s' is not imagenet, fashion-mnist or none", o->norm);
    return 0;
}

/* mean/std for C channels, or 1 after the error line */
static int norm_for(const classify_opts *o, int C, float *mean, float *std, int *use)
{
    static const float im_m[3] = MAE_IMAGENET_MEAN, im_s[3] = MAE_IMAGENET_STD;
    static const float fm_m[1] = MAE_FASHION_MNIST_MEAN, fm_s[1] = MAE_FASHION_MNIST_STD;
    const char *n = o->norm ? o->norm : C == 3 ? "imagenet" : C == 1 ? "fashion-mnist" : "none";
    *use = strcmp(n, "none") != 0;
    if (!*use)
        return 0;
    int im = !strcmp(n, "imagenet");
    if ((im && C != 3) || (!im && C != 1))
        return cli_errorf("classify", "--norm %s needs %d channels, the model has %d", n, im ? 3 : 1, C);
    for (int c = 0; c < C; c++) {
        mean[c] = im ? im_m[c] : fm_m[c];
        std[c] = im ? im_s[c] : fm_s[c];
    }
    return 0;
}

/* The eval transform into out [C,H,W]: the shorter side to round-down(max(H,W) / crop_pct),
 * the longer in proportion (torchvision's Resize(int)), then the centred H x W crop
 * (torchvision's CenterCrop offsets: round((R - H) / 2)). work holds the resized image. */
static int transform(const classify_opts *o, const char *path, int C, int H, int W,
                     const float *mean, const float *std, float **work, size_t *cap, float *out)
{
    uint8_t *px = NULL;
    int w, h, ch;
    mae_status s = mae_image_load(path, 0, &px, &w, &h, &ch);
    if (s != MAE_OK)
        return cli_fail("classify", path, s);
    int side = (int)((H > W ? H : W) / o->crop_pct);
    long rh, rw;
    if (h <= w) {
        rh = side;
        rw = (long)((double)side * w / h);
    } else {
        rw = side;
        rh = (long)((double)side * h / w);
    }
    if (rh < H || rw < W || rh > 1 << 15 || rw > 1 << 15) {
        mae_image_free(px);
        return cli_errorf("classify", "%s: %dx%d resizes to %ldx%ld, not a size to crop %dx%d from", path, w, h,
                          rw, rh, W, H);
    }
    size_t need = (size_t)C * rh * rw;
    if (need > *cap) {
        float *p = realloc(*work, need * sizeof *p);
        if (!p) {
            mae_image_free(px);
            return cli_errorf("classify", "out of memory");
        }
        *work = p;
        *cap = need;
    }
    s = mae_image_to_input(px, w, h, ch, 0, C, (int)rh, (int)rw, o->filter, 0, mean, std, *work);
    mae_image_free(px);
    if (s != MAE_OK)
        return cli_fail("classify", path, s);
    long top = lround((rh - H) / 2.0), left = lround((rw - W) / 2.0);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            memcpy(out + ((size_t)c * H + y) * W, *work + ((size_t)c * rh + top + y) * rw + left, (size_t)W * sizeof *out);
    return 0;
}

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static int report(const classify_opts *o, const mae_classifier *cl, const char *path, const float *logits,
                  int K, double *prob, int *order)
{
    double mx = -INFINITY, sum = 0;
    for (int k = 0; k < K; k++)
        mx = logits[k] > mx ? logits[k] : mx;
    for (int k = 0; k < K; k++)
        sum += prob[k] = exp((double)logits[k] - mx);
    /* the top classes by selection: K may be large, top is small */
    int top = o->top < K ? o->top : K;
    for (int k = 0; k < K; k++)
        order[k] = k;
    for (int i = 0; i < top; i++) {
        int best = i;
        for (int j = i + 1; j < K; j++)
            if (logits[order[j]] > logits[order[best]])
                best = j;
        int t = order[i]; order[i] = order[best]; order[best] = t;
    }
    if (o->json) {
        printf("{\"image\":");
        json_string(path);
        printf(",\"top\":[");
    } else
        printf("%s\n", path);
    for (int i = 0; i < top; i++) {
        const char *label = "?";
        mae_classifier_label(cl, order[i], &label);
        if (o->json) {
            printf("%s{\"label\":", i ? "," : "");
            json_string(label);
            printf(",\"index\":%d,\"probability\":%.9g}", order[i], prob[order[i]] / sum);
        } else
            printf("  %6.2f%%  %s (%d)\n", 100.0 * prob[order[i]] / sum, label, order[i]);
    }
    if (o->json) {
        printf("],\"logits\":[");
        for (int k = 0; k < K; k++)
            printf("%s%.9g", k ? "," : "", logits[k]);
        printf("]}\n");
    }
    return ferror(stdout) ? cli_errorf("classify", "writing the output failed") : 0;
}

int cmd_classify(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    classify_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) {
        free(o.images);
        return rc;
    }
    mae_classifier *cl = NULL;
    mae_ctx *ctx = NULL;
    const mae_model *m = NULL;
    float *img = NULL, *logits = NULL, *work = NULL;
    double *prob = NULL;
    int *order = NULL, K = 0, use_norm = 0;
    size_t cap = 0;
    float mean[4], std[4];
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_status s = mae_classifier_load(o.model, 0, &cl);
    if (s != MAE_OK) {
        rc = cli_fail("classify", o.model, s);
        goto done;
    }
    /* before the context: the conversion rewrites the weights a context reads */
    if ((s = mae_classifier_set_precision(cl, o.precision)) != MAE_OK) {
        rc = cli_fail("classify", "--precision", s);
        goto done;
    }
    mae_classifier_model(cl, &m);
    mae_classifier_num_classes(cl, &K);
    mae_model_get_config(m, &cfg);
    int C = cfg.in_chans, H = cfg.img_height, W = cfg.img_width;
    if ((rc = norm_for(&o, C, mean, std, &use_norm)) != 0)
        goto done;
    if ((s = mae_ctx_create(m, 1, &ctx)) != MAE_OK || (o.threads && (s = mae_ctx_set_threads(ctx, o.threads)) != MAE_OK)) {
        rc = cli_fail("classify", "context", s);
        goto done;
    }
    img = malloc((size_t)C * H * W * sizeof *img);
    logits = malloc((size_t)K * sizeof *logits);
    prob = malloc((size_t)K * sizeof *prob);
    order = malloc((size_t)K * sizeof *order);
    if (!img || !logits || !prob || !order) {
        rc = cli_errorf("classify", "out of memory");
        goto done;
    }
    for (int i = 0; i < o.nimages && rc == 0; i++) {
        rc = transform(&o, o.images[i], C, H, W, use_norm ? mean : NULL, use_norm ? std : NULL, &work, &cap, img);
        if (rc == 0 && (s = mae_classifier_forward(cl, ctx, img, 1, logits)) != MAE_OK)
            rc = cli_fail("classify", o.images[i], s);
        if (rc == 0)
            rc = report(&o, cl, o.images[i], logits, K, prob, order);
    }
done:
    free(img); free(logits); free(prob); free(order); free(work); free(o.images);
    mae_ctx_free(ctx);
    mae_classifier_free(cl);
    return rc;
}
