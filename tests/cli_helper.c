/* Helper of tests/check_cli.sh (built by it, not by the Makefile):
 *   cli_helper images DIR            writes test images with plain fwrite (no library code):
 *                                    DIR/rgb0.ppm rgb1.ppm rgb2.ppm (16x16), wide.ppm (24x20),
 *                                    gray0..3.pgm (28x28) and gray.idx (the same 4, IDX format)
 *   cli_helper encoder-only IN OUT   OUT = IN's encoder tensors only, config in __metadata__
 *   cli_helper poison IN OUT NAME    OUT = IN with element 0 of tensor NAME set to NaN
 *   cli_helper step-bound MODEL CKPT mae_trainer_load refuses a checkpoint whose step is beyond its
 *                                    schedule, at exactly the step an integer count says
 *   cli_helper file-write PATH       mae_file_write: bad arguments change nothing, an empty and a
 *                                    non-empty file read back as written
 *   cli_helper check MODEL FILE POOL IMAGE...
 *                                    FILE (.npy / .safetensors from `mae features`) must hold the
 *                                    POOL features of the images (each of the model's exact size):
 *                                    the reference normalizes the pixels itself and runs the
 *                                    patch embedder and the encoder in image order (no masker)
 *   cli_helper png-size FILE         prints the PNG's IHDR width and height
 *   cli_helper png-colours FILE X0 Y0 X1 Y1 R,G,B...
 *                                    decodes FILE with mae_image_load (as RGB) and prints its width,
 *                                    height and, per colour, how many pixels of exactly that colour
 *                                    lie in the box [X0, X1) x [Y0, Y1) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mae.h"

static int fail(const char *what)
{
    fprintf(stderr, "cli_helper: %s: %s\n", what, mae_last_error());
    return 1;
}

static int write_pnm(const char *path, int w, int h, int c, unsigned seed)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 1;
    fprintf(f, "P%c\n%d %d\n255\n", c == 1 ? '5' : '6', w, h);
    for (int i = 0; i < w * h * c; i++)
        fputc((int)((i * 37u + seed * 101u + (unsigned)(i / 7) * 13u) % 256u), f);
    return fclose(f) != 0;
}

static int images(const char *dir)
{
    char p[4096];
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/rgb%d.ppm", dir, k);
        bad |= write_pnm(p, 16, 16, 3, (unsigned)k + 1);
    }
    snprintf(p, sizeof p, "%s/wide.ppm", dir);
    bad |= write_pnm(p, 24, 20, 3, 9);
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "%s/gray%d.pgm", dir, k);
        bad |= write_pnm(p, 28, 28, 1, (unsigned)k + 20);
    }
    /* the same four gray images as an IDX file: magic 0x00000803, then n, h, w big-endian */
    snprintf(p, sizeof p, "%s/gray.idx", dir);
    FILE *f = fopen(p, "wb");
    if (!f)
        return 1;
    unsigned char head[16] = { 0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 28, 0, 0, 0, 28 };
    fwrite(head, 1, 16, f);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 28 * 28; i++)
            fputc((int)((i * 37u + ((unsigned)k + 20) * 101u + (unsigned)(i / 7) * 13u) % 256u), f);
    return (fclose(f) != 0) | bad;
}

/* ---- rewritten checkpoints ---- */

/* Writes IN's tensors to OUT (F32, config in __metadata__): without the decoder when
 * encoder_only, and with element 0 of the tensor named poison (NULL: none) set to NaN. */
static int rewrite(const char *in, const char *out, int encoder_only, const char *poison)
{
    mae_model *m;
    if (mae_model_load(in, &m) != MAE_OK)
        return fail(in);
    mae_config c;
    c.struct_size = sizeof c;
    mae_model_get_config(m, &c);
    static char head[1 << 16];
    size_t used = (size_t)snprintf(head, sizeof head,
        "{\"__metadata__\":{\"img_size\":\"%d\",\"patch_size\":\"%d\",\"in_chans\":\"%d\","
        "\"embed_dim\":\"%d\",\"depth\":\"%d\",\"num_heads\":\"%d\",\"mlp_ratio\":\"%g\","
        "\"norm_pix_loss\":\"%s\",\"mask_ratio\":\"%g\",\"layer_norm_eps\":\"%g\"",
        c.img_size, c.patch_size, c.in_chans, c.embed_dim, c.depth, c.num_heads,
        (double)c.mlp_ratio, c.norm_pix_loss ? "true" : "false", (double)c.mask_ratio,
        (double)c.layer_norm_eps);
    if (!encoder_only)
        used += (size_t)snprintf(head + used, sizeof head - used,
            ",\"decoder_embed_dim\":\"%d\",\"decoder_depth\":\"%d\",\"decoder_num_heads\":\"%d\"",
            c.decoder_embed_dim, c.decoder_depth, c.decoder_num_heads);
    used += (size_t)snprintf(head + used, sizeof head - used, "}");
    int n = 0;
    mae_model_tensor_count(m, &n);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const char *name;
        int nd;
        int64_t sh[4];
        size_t cnt;
        mae_model_tensor_name(m, i, &name);
        if (encoder_only && (strncmp(name, "decoder", 7) == 0 || strcmp(name, "mask_token") == 0))
            continue;
        mae_model_tensor(m, name, NULL, &cnt, &nd, sh);
        used += (size_t)snprintf(head + used, sizeof head - used, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", name);
        for (int d = 0; d < nd; d++)
            used += (size_t)snprintf(head + used, sizeof head - used, "%lld%s", (long long)sh[d], d + 1 < nd ? "," : "");
        used += (size_t)snprintf(head + used, sizeof head - used, "],\"data_offsets\":[%zu,%zu]}", off, off + 4 * cnt);
        off += 4 * cnt;
    }
    used += (size_t)snprintf(head + used, sizeof head - used, "}");
    while (used % 8)
        head[used++] = ' ';
    FILE *f = fopen(out, "wb");
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((unsigned long long)used >> (8 * i));
    int bad = !f || fwrite(len, 1, 8, f) != 8 || fwrite(head, 1, used, f) != used, poisoned = 0;
    for (int i = 0; i < n && !bad; i++) {
        const char *name;
        const float *data;
        size_t cnt;
        mae_model_tensor_name(m, i, &name);
        if (encoder_only && (strncmp(name, "decoder", 7) == 0 || strcmp(name, "mask_token") == 0))
            continue;
        mae_model_tensor(m, name, &data, &cnt, NULL, NULL);
        size_t from = 0;
        if (poison && strcmp(name, poison) == 0) {
            float nan = NAN;
            bad = fwrite(&nan, 4, 1, f) != 1;
            from = 1;
            poisoned = 1;
        }
        bad = bad || fwrite(data + from, 4, cnt - from, f) != cnt - from;
    }
    if (f)
        bad |= fclose(f) != 0;
    if (poison && !poisoned)
        fprintf(stderr, "cli_helper: %s has no tensor '%s'\n", in, poison);
    mae_model_free(m);
    return bad || (poison && !poisoned);
}

/* ---- features check ---- */

/* Reads a P5/P6 file as written by write_pnm (header "P5\nW H\n255\n"). */
static unsigned char *read_pnm(const char *path, int *w, int *h, int *c)
{
    FILE *f = fopen(path, "rb");
    char magic;
    if (!f || fscanf(f, "P%c %d %d 255", &magic, w, h) != 3 || fgetc(f) != '\n') {
        if (f)
            fclose(f);
        return NULL;
    }
    *c = magic == '5' ? 1 : 3;
    size_t n = (size_t)*w * (size_t)*h * (size_t)*c;
    unsigned char *px = malloc(n);
    if (px && fread(px, 1, n, f) != n) {
        free(px);
        px = NULL;
    }
    fclose(f);
    return px;
}

/* Reads FILE: the float data, and the shape text as the file states it. */
static float *read_features(const char *path, char *shape, size_t shape_size, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)size + 1);
    if (!b || fread(b, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    b[size] = 0;
    size_t data_at, hdr_at = 8;
    const char *key, *end_mark;
    if (size > 10 && memcmp(b, "\x93NUMPY\x01\x00", 8) == 0) {
        data_at = 10 + (size_t)(b[8] | b[9] << 8);
        hdr_at = 10;
        key = "'shape': (";
        end_mark = ")";
    } else {
        unsigned long long hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = hl << 8 | b[i];
        data_at = 8 + (size_t)hl;
        key = "\"shape\":[";
        end_mark = "]";
    }
    char *hdr = (char *)b + hdr_at, *s = strstr(hdr, key), *e = s ? strstr(s, end_mark) : NULL;
    if (!s || !e || data_at > (size_t)size || (size_t)(e - s) >= shape_size) {
        free(b);
        return NULL;
    }
    s += strlen(key);
    memcpy(shape, s, (size_t)(e - s));
    shape[e - s] = 0;
    *count = ((size_t)size - data_at) / 4;
    float *x = malloc(*count * 4 + 4);
    if (x)
        memcpy(x, b + data_at, *count * 4);
    free(b);
    return x;
}

/* The reference features of one image (the model's size) into out; returns floats written. */
static size_t reference(const mae_model *m, mae_ctx *c, const char *img_path, const char *pool,
                        float *out)
{
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_model_get_config(m, &cfg);
    int C = cfg.in_chans, H = cfg.img_height, W = cfg.img_width, D = cfg.embed_dim;
    int L = (H / cfg.patch_size) * (W / cfg.patch_size), T = 1 + L;
    int w, h, ch;
    unsigned char *px = read_pnm(img_path, &w, &h, &ch);
    if (!px || w != W || h != H || ch != C) {
        free(px);
        fprintf(stderr, "cli_helper: %s is not a %dx%d %d-channel PNM\n", img_path, W, H, C);
        return 0;
    }
    const float imn[3] = MAE_IMAGENET_MEAN, isd[3] = MAE_IMAGENET_STD;
    float *x = malloc(sizeof(float) * (size_t)(C * H * W));
    float *tok = malloc(sizeof(float) * (size_t)(L * D)), *lat = malloc(sizeof(float) * (size_t)(T * D));
    for (int k = 0; k < C; k++)
        for (int i = 0; i < H * W; i++) {
            double mean = C == 3 ? imn[k] : 0.2860f, sd = C == 3 ? isd[k] : 0.3530f;
            x[k * H * W + i] = (float)((px[i * C + k] / 255.0 - mean) / sd);
        }
    const mae_patch_embed *pe;
    const mae_encoder *enc;
    size_t n = 0;
    if (mae_model_patch_embed(m, &pe) != MAE_OK || mae_model_encoder(m, &enc) != MAE_OK ||
        mae_patch_embed_forward(pe, c, x, 1, tok) != MAE_OK ||
        mae_encoder_forward(enc, c, tok, 1, NULL, L, lat) != MAE_OK) {
        fail("reference forward");
    } else if (strcmp(pool, "tokens") == 0) {
        memcpy(out, lat, sizeof(float) * (size_t)(T * D));
        n = (size_t)(T * D);
    } else {
        if (strcmp(pool, "mean") != 0)
            memcpy(out + n, lat, sizeof(float) * (size_t)D), n += (size_t)D;
        if (strcmp(pool, "cls") != 0) {
            for (int d = 0; d < D; d++) {
                double s = 0;
                for (int t = 1; t < T; t++)
                    s += lat[t * D + d];
                out[n + (size_t)d] = (float)(s / L);
            }
            n += (size_t)D;
        }
    }
    free(px);
    free(x);
    free(tok);
    free(lat);
    return n;
}

static int check(const char *model, const char *file, const char *pool, int nimg, char **imgs)
{
    mae_model *m;
    mae_ctx *c;
    if (mae_model_load(model, &m) != MAE_OK)
        return fail(model);
    if (mae_ctx_create(m, 1, &c) != MAE_OK)
        return fail("context");
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_model_get_config(m, &cfg);
    int D = cfg.embed_dim, L = (cfg.img_height / cfg.patch_size) * (cfg.img_width / cfg.patch_size);
    char want[64], got[64];
    if (strcmp(pool, "tokens") == 0)
        snprintf(want, sizeof want, "%d,%d,%d", nimg, 1 + L, D);
    else
        snprintf(want, sizeof want, "%d,%d", nimg, strcmp(pool, "cls+mean") == 0 ? 2 * D : D);
    size_t count = 0;
    float *x = read_features(file, got, sizeof got, &count);
    /* the .npy writes "4, 96"; compare without the spaces */
    char *w = got;
    for (char *r = got; x && *r; r++)
        if (*r != ' ')
            *w++ = *r;
    *w = 0;
    int bad = !x || strcmp(got, want) != 0;
    if (bad)
        fprintf(stderr, "cli_helper: %s: shape [%s], want [%s]\n", file, x ? got : "?", want);
    float *ref = malloc(sizeof(float) * (size_t)(nimg * (1 + L) * D + 1));
    size_t n = 0;
    for (int i = 0; i < nimg && !bad; i++) {
        size_t k = reference(m, c, imgs[i], pool, ref + n);
        bad = k == 0;
        n += k;
    }
    double worst = 0;
    if (!bad && n != count) {
        fprintf(stderr, "cli_helper: %s holds %zu floats, want %zu\n", file, count, n);
        bad = 1;
    }
    for (size_t i = 0; i < n && !bad; i++) {
        double e = fabs((double)x[i] - ref[i]) / (1e-3 + fabs((double)ref[i]));
        worst = e > worst || isnan(e) ? e : worst;
    }
    if (!bad && !(worst <= 1e-5)) {
        fprintf(stderr, "cli_helper: %s differs from the reference: relative error %g\n", file, worst);
        bad = 1;
    }
    if (!bad)
        printf("%s: shape [%s], %zu values match the reference (worst relative error %.2g)\n", file,
               want, n, worst);
    free(x);
    free(ref);
    mae_ctx_free(c);
    mae_model_free(m);
    return bad;
}

static int png_size(const char *path)
{
    unsigned char b[24];
    FILE *f = fopen(path, "rb");
    if (!f || fread(b, 1, 24, f) != 24 || memcmp(b + 12, "IHDR", 4) != 0) {
        if (f)
            fclose(f);
        fprintf(stderr, "cli_helper: %s: not a PNG\n", path);
        return 1;
    }
    fclose(f);
    unsigned long w = (unsigned long)b[16] << 24 | (unsigned long)b[17] << 16 | (unsigned long)b[18] << 8 | b[19];
    unsigned long h = (unsigned long)b[20] << 24 | (unsigned long)b[21] << 16 | (unsigned long)b[22] << 8 | b[23];
    printf("%lu %lu\n", w, h);
    return 0;
}

/* ---- mae_file_write ---- */

static int read_back(const char *path, const char *want, size_t n)
{
    char got[64];
    FILE *f = fopen(path, "rb");
    size_t k = f ? fread(got, 1, sizeof got, f) : 0;
    if (f)
        fclose(f);
    return !f || k != n || memcmp(got, want, n) != 0;
}

static int file_write(const char *path)
{
    static const char text[] = "libmae\n";
    int bad = mae_file_write(path, text, 7) != MAE_OK || read_back(path, text, 7);
    bad |= mae_file_write(NULL, text, 7) != MAE_ERR_INVALID_ARG;
    bad |= mae_file_write(path, NULL, 3) != MAE_ERR_INVALID_ARG || read_back(path, text, 7);
    bad |= mae_file_write(path, NULL, 0) != MAE_OK || read_back(path, "", 0);
    if (bad)
        fprintf(stderr, "cli_helper: mae_file_write: %s\n", mae_last_error());
    return bad;
}

/* ---- mae_trainer_load's step bound ---- */

/* A scheduled run of E epochs (E = num / 4, exact in binary) of ipe data iterations, accum_iter
 * of them per step, takes N = ceil(E * ipe / accum) steps: computed here in integers. A
 * checkpoint at step N loads; at N + 1 it is MAE_ERR_FORMAT; without a schedule
 * (iters_per_epoch 0) any step loads. */
static int step_bound(const char *model, const char *ckpt)
{
    static const int cases[][3] = { { 6, 3, 2 }, { 8, 4, 1 }, { 5, 5, 3 }, { 3, 7, 1 } };
    mae_model *m, *m2;   /* one model per trainer: a trainer owns its model while it trains */
    if (mae_model_load(model, &m) != MAE_OK || mae_model_load(model, &m2) != MAE_OK)
        return fail(model);
    mae_config c;
    c.struct_size = sizeof c;
    mae_model_get_config(m, &c);
    size_t n = (size_t)c.in_chans * (size_t)c.img_height * (size_t)c.img_width;
    float *img = malloc(n * sizeof *img);
    for (size_t i = 0; i < n; i++)
        img[i] = (float)((i * 37 % 101) / 50.0 - 1.0);
    int bad = 0;
    for (int k = 0; k < 5 && !bad; k++) {
        int num = k < 4 ? cases[k][0] : 6, ipe = k < 4 ? cases[k][1] : 0, acc = k < 4 ? cases[k][2] : 1;
        long long want = ((long long)num * ipe + 4LL * acc - 1) / (4LL * acc);
        if (k == 4)
            want = 5;   /* no schedule: 5 and 6 steps both load */
        mae_train_config tc;
        mae_train_config_init(&tc, sizeof tc);
        tc.epochs = num / 4.0;
        tc.warmup_epochs = 0.25;
        tc.iters_per_epoch = ipe;
        tc.accum_iter = acc;
        tc.lr = 1e-4;
        mae_trainer *t = NULL, *u = NULL;   /* u loads what t saves */
        bad = mae_trainer_create(m, 1, &t) != MAE_OK || mae_trainer_set_config(t, &tc) != MAE_OK ||
              mae_trainer_create(m2, 1, &u) != MAE_OK;
        for (long long st = 0; st <= want && !bad; st++) {
            bad = mae_trainer_forward_backward(t, img, 1, NULL, NULL) != MAE_OK || mae_trainer_step(t) != MAE_OK ||
                  mae_trainer_save(t, ckpt) != MAE_OK;
            mae_status s = bad ? MAE_OK : mae_trainer_load(u, ckpt);
            mae_status expect = st + 1 <= want || k == 4 ? MAE_OK : MAE_ERR_FORMAT;
            if (!bad && s != expect) {
                fprintf(stderr, "cli_helper: %g epochs of %d, accum %d: step %lld loads with %s, want %s "
                        "(%lld steps in the schedule): %s\n", tc.epochs, ipe, acc, st + 1, mae_status_str(s),
                        mae_status_str(expect), want, mae_last_error());
                bad = 1;
            }
        }
        mae_trainer_free(t);
        mae_trainer_free(u);
        if (!bad && k < 4)
            printf("%g epochs of %d iterations, accum_iter %d: steps up to %lld load, %lld is FORMAT\n",
                   tc.epochs, ipe, acc, want, want + 1);
    }
    free(img);
    mae_model_free(m);
    mae_model_free(m2);
    return bad;
}

static int png_colours(const char *path, char **box, int ncol, char **col)
{
    uint8_t *px;
    int w, h, c;
    if (mae_image_load(path, 3, &px, &w, &h, &c) != MAE_OK)
        return fail(path);
    int x0 = atoi(box[0]), y0 = atoi(box[1]), x1 = atoi(box[2]), y1 = atoi(box[3]);
    printf("%d %d", w, h);
    for (int k = 0; k < ncol; k++) {
        unsigned r, g, b;
        long count = 0;
        if (sscanf(col[k], "%u,%u,%u", &r, &g, &b) != 3) {
            mae_image_free(px);
            fprintf(stderr, "cli_helper: bad colour '%s'\n", col[k]);
            return 2;
        }
        for (int y = y0 > 0 ? y0 : 0; y < y1 && y < h; y++)
            for (int x = x0 > 0 ? x0 : 0; x < x1 && x < w; x++) {
                const uint8_t *p = px + ((size_t)y * (size_t)w + (size_t)x) * 3;
                count += p[0] == r && p[1] == g && p[2] == b;
            }
        printf(" %ld", count);
    }
    printf("\n");
    mae_image_free(px);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "images") == 0)
        return images(argv[2]);
    if (argc == 4 && strcmp(argv[1], "encoder-only") == 0)
        return rewrite(argv[2], argv[3], 1, NULL);
    if (argc == 5 && strcmp(argv[1], "poison") == 0)
        return rewrite(argv[2], argv[3], 0, argv[4]);
    if (argc == 4 && strcmp(argv[1], "step-bound") == 0)
        return step_bound(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "file-write") == 0)
        return file_write(argv[2]);
    if (argc >= 6 && strcmp(argv[1], "check") == 0)
        return check(argv[2], argv[3], argv[4], argc - 5, argv + 5);
    if (argc == 3 && strcmp(argv[1], "png-size") == 0)
        return png_size(argv[2]);
    if (argc >= 8 && strcmp(argv[1], "png-colours") == 0)
        return png_colours(argv[2], argv + 3, argc - 7, argv + 7);
    fprintf(stderr, "cli_helper: bad arguments\n");
    return 2;
}
