/* Fault injection through the public allocator hook. Two sequences: one creates a model, a
 * context, runs forward passes, resizes, trains a step and saves/loads checkpoints; the other
 * encodes a PNG, decodes it (with a channel conversion), reads a plain and a gzip IDX buffer and
 * draws the demo figure (mae_png_encode, mae_image_load_memory, mae_idx_load_memory,
 * mae_visualize). Each is run once to count its allocations, then once for every k with the
 * k-th allocation failing. Each run must end in a clean MAE_ERR_NOMEM from the call that made
 * the failing allocation, leave that call's outputs untouched, and, once everything is freed,
 * leave no live block. */
#include <stdio.h>
#include <unistd.h>
#include "testutil.h"

/* The counting, failing allocator is tests/testutil.h's hook (tu_alloc): calls, live blocks,
 * bad frees, and fail_at, the allocation that fails (1-based; 0 = none). */

/* ---- the sequence ----------------------------------------------------------------------------- */

static char ckpt_path[64];
static int have_files = -1;     /* mae_model_save implemented? decided before the counting run */
static int have_trainer_files = -1;   /* mae_trainer_save implemented? */

typedef struct outcome {
    mae_status status;      /* of the first call that failed, MAE_OK if none */
    const char *step;       /* its name */
    long calls_before;      /* allocations made before that call */
    int outputs_touched;    /* it wrote an output anyway */
} outcome;

#define STEP(name, expr) do { \
    long before_ = tu_alloc.calls; \
    mae_status s_ = (expr); \
    if (s_ != MAE_OK) { o.status = s_; o.step = name; o.calls_before = before_; goto done; } \
} while (0)

/* The same, and on failure `untouched` says whether the call left its outputs alone. */
#define STEP_OUT(name, expr, untouched) do { \
    long before_ = tu_alloc.calls; \
    mae_status s_ = (expr); \
    if (s_ != MAE_OK) { o.status = s_; o.step = name; o.calls_before = before_; \
                        o.outputs_touched = !(untouched); goto done; } \
} while (0)

static outcome run_sequence(void)
{
    outcome o = { MAE_OK, "", 0, 0 };
    static float imgs[2 * 3 * 32 * 32], pred[2 * 16 * 192], mask[2 * 16], loss_box[1];
    mae_model *m = NULL, *r = NULL, *loaded = NULL;
    mae_ctx *c = NULL, *cr = NULL;
    mae_trainer *t = NULL;
    mae_config cfg;
    float loss = 0;
    void *const sentinel = &tu_alloc;

    for (size_t i = 0; i < sizeof imgs / sizeof imgs[0]; i++)
        imgs[i] = (float)((i * 7919) % 255) / 127.5f - 1.0f;
    STEP("config", mae_config_init(&cfg, sizeof cfg, "tiny"));

    m = sentinel;
    STEP("mae_model_create", mae_model_create(&cfg, 3, &m));
    c = sentinel;
    STEP("mae_ctx_create", mae_ctx_create(m, 2, &c));
    STEP("mae_ctx_set_threads", mae_ctx_set_threads(c, 3));
    loss_box[0] = -1.0f;
    STEP("mae_forward", mae_forward(c, imgs, 2, NULL, loss_box, pred, mask, NULL));
    r = sentinel;
    STEP("mae_model_resize", mae_model_resize(m, 24, 40, &r));
    cr = sentinel;
    STEP("mae_ctx_create (resized)", mae_ctx_create(r, 1, &cr));
    STEP("mae_forward (resized)", mae_forward(cr, imgs, 1, NULL, &loss, NULL, NULL, NULL));
    mae_ctx_free(c);   /* the trainer converts a model made for inference: no context may live */
    c = sentinel;
    t = sentinel;
    STEP("mae_trainer_create", mae_trainer_create(m, 2, &t));
    STEP("mae_trainer_set_threads", mae_trainer_set_threads(t, 2));
    STEP("mae_trainer_forward_backward", mae_trainer_forward_backward(t, imgs, 2, NULL, &loss));
    STEP("mae_trainer_step", mae_trainer_step(t));
    if (have_files) {
        STEP("mae_model_save_as", mae_model_save_as(m, ckpt_path, "F16"));
        STEP("mae_model_save", mae_model_save(m, ckpt_path));
        loaded = sentinel;
        STEP("mae_model_load", mae_model_load(ckpt_path, &loaded));
    }
    if (have_trainer_files) {
        STEP("mae_trainer_save", mae_trainer_save(t, ckpt_path));
        STEP("mae_trainer_load", mae_trainer_load(t, ckpt_path));
    }
done:
    /* a failed create must leave *out alone; a failed forward its outputs */
    if (o.status != MAE_OK) {
        if ((!strcmp(o.step, "mae_model_create") && m != sentinel) || (!strcmp(o.step, "mae_ctx_create") && c != sentinel) ||
            (!strcmp(o.step, "mae_model_resize") && r != sentinel) || (!strcmp(o.step, "mae_ctx_create (resized)") && cr != sentinel) ||
            (!strcmp(o.step, "mae_trainer_create") && t != sentinel) || (!strcmp(o.step, "mae_model_load") && loaded != sentinel) ||
            (!strcmp(o.step, "mae_forward") && loss_box[0] != -1.0f))
            o.outputs_touched = 1;
    }
    if (loaded != sentinel) mae_model_free(loaded);
    if (t != sentinel) mae_trainer_free(t);
    if (cr != sentinel) mae_ctx_free(cr);
    if (r != sentinel) mae_model_free(r);
    if (c != sentinel) mae_ctx_free(c);
    if (m != sentinel) mae_model_free(m);
    return o;
}

/* ---- the image sequence ------------------------------------------------------------------------ */

/* An IDX file of unsigned bytes, dims {2, 3, 4}, values (i * 37) % 256, compressed by Python's
 * gzip.compress(level 9, mtime 0): fixed Huffman codes, so inflate allocates for real data. */
static const uint8_t idx_gz[57] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x63, 0x60, 0xe0, 0x60, 0x66, 0x60,
    0x60, 0x60, 0x02, 0x62, 0x10, 0xcd, 0xc2, 0xa0, 0xea, 0x95, 0x3f, 0x65, 0xe7, 0x3d, 0x66, 0x0d,
    0xdf, 0xa2, 0xe9, 0x7b, 0x1e, 0xb2, 0x69, 0x07, 0x94, 0xce, 0xda, 0xff, 0x84, 0x53, 0x2f, 0x18,
    0x00, 0xb3, 0x46, 0x3d, 0xd8, 0x28, 0x00, 0x00, 0x00
};

/* The same file uncompressed. */
static void make_idx(uint8_t out[40])
{
    static const uint8_t head[16] = { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4 };
    memcpy(out, head, sizeof head);
    for (int i = 0; i < 24; i++)
        out[16 + i] = (uint8_t)((i * 37) % 256);
}

/* Whether an IDX read gave the file's dims {2, 3, 4} and values. */
static int idx_ok(const uint8_t *data, int ndim, const int64_t dims[4])
{
    int ok = data && ndim == 3 && dims[0] == 2 && dims[1] == 3 && dims[2] == 4;
    for (int i = 0; ok && i < 24; i++)
        ok = data[i] == (uint8_t)((i * 37) % 256);
    return ok;
}

static outcome run_image_sequence(void)
{
    enum { W = 13, H = 9, STRIDE = W * 3 + 5 };
    outcome o = { MAE_OK, "", 0, 0 };
    static uint8_t px[H * STRIDE];
    static float imgs[2 * 3 * 16 * 16], pred[2 * 16 * 48], mask[2 * 16];
    uint8_t idx[40];
    void *const sentinel = &tu_alloc;
    uint8_t *png = sentinel, *pixels = sentinel, *data = sentinel, *gz_data = sentinel, *rgb = sentinel;
    size_t png_size = 0;
    int w = -1, h = -1, ch = -1, ndim = -1, gz_ndim = -1, fw = -1, fh = -1;
    int64_t dims[4] = { -1, -1, -1, -1 }, gz_dims[4] = { -1, -1, -1, -1 };
    mae_model *m = sentinel;
    mae_config cfg;

    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 29 + 3);
    for (size_t i = 0; i < sizeof imgs / sizeof imgs[0]; i++)
        imgs[i] = (float)((i * 7919) % 255) / 127.5f - 1.0f;
    for (size_t i = 0; i < sizeof pred / sizeof pred[0]; i++)
        pred[i] = (float)((i * 104729) % 201) / 100.0f - 1.0f;
    for (size_t i = 0; i < sizeof mask / sizeof mask[0]; i++)
        mask[i] = i % 3 ? 1.0f : 0.0f;
    make_idx(idx);

    STEP_OUT("mae_png_encode", mae_png_encode(px, W, H, 3, STRIDE, &png, &png_size), png == sentinel);
    STEP_OUT("mae_image_load_memory", mae_image_load_memory(png, png_size, 4, &pixels, &w, &h, &ch),
             pixels == sentinel && w == -1 && h == -1 && ch == -1);
    if (w != W || h != H || ch != 4) {
        o.status = MAE_ERR_FORMAT;
        o.step = "decoded PNG has the wrong size";
        goto done;
    }
    STEP_OUT("mae_idx_load_memory", mae_idx_load_memory(idx, sizeof idx, &data, &ndim, dims),
             data == sentinel && ndim == -1 && dims[0] == -1);
    STEP_OUT("mae_idx_load_memory (gzip)", mae_idx_load_memory(idx_gz, sizeof idx_gz, &gz_data, &gz_ndim, gz_dims),
             gz_data == sentinel && gz_ndim == -1 && gz_dims[0] == -1);
    if (!idx_ok(data, ndim, dims) || !idx_ok(gz_data, gz_ndim, gz_dims)) {
        o.status = MAE_ERR_FORMAT;
        o.step = "IDX values differ from the file's";
        goto done;
    }
    STEP("config", mae_config_init(&cfg, sizeof cfg, "tiny"));
    cfg.img_size = 16; cfg.patch_size = 4; cfg.embed_dim = 16; cfg.depth = 1; cfg.num_heads = 2;
    cfg.decoder_embed_dim = 8; cfg.decoder_depth = 1; cfg.decoder_num_heads = 2;
    STEP_OUT("mae_model_create", mae_model_create(&cfg, 5, &m), m == sentinel);
    STEP_OUT("mae_visualize", mae_visualize(m, imgs, pred, mask, 2, MAE_PRED_NORM_VISIBLE, NULL, NULL, 2,
                                            &rgb, &fw, &fh),
             rgb == sentinel && fw == -1 && fh == -1);
done:
    if (png != sentinel) mae_image_free(png);
    if (pixels != sentinel) mae_image_free(pixels);
    if (data != sentinel) mae_image_free(data);
    if (gz_data != sentinel) mae_image_free(gz_data);
    if (rgb != sentinel) mae_image_free(rgb);
    if (m != sentinel) mae_model_free(m);
    return o;
}

/* ---- every k ------------------------------------------------------------------------------------ */

/* Counts the allocations of seq, then runs it once for every k with the k-th failing. Returns
 * the count. */
static long fail_every_k(const char *what, outcome (*seq)(void))
{
    tu_alloc_reset();
    outcome full = seq();
    CHECK(full.status == MAE_OK, "%s: the sequence fails without faults at %s: %s", what, full.step, mae_last_error());
    CHECK(tu_alloc.live == 0 && tu_alloc.bad_frees == 0, "%s: the clean run leaves %ld live blocks", what, tu_alloc.live);
    long total = tu_alloc.calls;
    CHECK(total > 10, "%s: only %ld allocations counted: the hook is not used", what, total);

    for (long k = 1; k <= total; k++) {
        tu_alloc_reset();
        tu_alloc.fail_at = k;
        outcome o = seq();
        /* every allocation of the sequence is one that can fail, and each failure surfaces */
        CHECK(o.status == MAE_ERR_NOMEM, "%s: k=%ld: status %s at %s (%s)", what, k, mae_status_str(o.status), o.step,
              mae_last_error());
        CHECK(o.status == MAE_OK || (o.calls_before < k && tu_alloc.calls >= k),
              "%s: k=%ld: %s failed, but the failing allocation was made elsewhere", what, k, o.step);
        CHECK(!o.outputs_touched, "%s: k=%ld: %s wrote its output on failure", what, k, o.step);
        CHECK(mae_last_error()[0] != '\0', "%s: k=%ld: no message", what, k);
        CHECK(tu_alloc.live == 0, "%s: k=%ld (failing in %s): %ld blocks leak", what, k, o.step, tu_alloc.live);
        CHECK(tu_alloc.bad_frees == 0, "%s: k=%ld: a block was freed twice", what, k);
    }
    return total;
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    snprintf(ckpt_path, sizeof ckpt_path, "/tmp/mae_test_faults_%ld.safetensors", (long)getpid());
    tu_alloc_reset();
    CHECK_OK(tu_alloc_install());

    /* decide whether checkpoints can be part of the sequence */
    {
        mae_config cfg;
        mae_model *m = NULL;
        CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
        CHECK_OK(mae_model_create(&cfg, 1, &m));
        have_files = m && mae_model_save(m, ckpt_path) != MAE_ERR_UNSUPPORTED;
        mae_trainer *t = NULL;
        CHECK_OK(mae_trainer_create(m, 1, &t));
        have_trainer_files = t && mae_trainer_save(t, ckpt_path) != MAE_ERR_UNSUPPORTED;
        mae_trainer_free(t);
        mae_model_free(m);
    }

    long total = 0, images = 0;
    TU_RUN("model", total = fail_every_k("model", run_sequence));
    TU_RUN("images", images = fail_every_k("images", run_image_sequence));
    CHECK_OK(mae_set_allocator(NULL));
    remove(ckpt_path);
    if (tu_failures == 0)
        printf("test_faults: %ld allocations in the model sequence%s, %ld in the image sequence; each made to fail in turn, each a clean NOMEM with no leak\n",
           total, have_files && have_trainer_files ? " (with checkpoints)"
                  : have_files ? " (with model checkpoints; trainer checkpoints not implemented yet)"
                  : " (checkpoints not implemented yet: left out)", images);
    return tu_finish("test_faults");
}
