/* Fault injection through the public allocator hook: a sequence that creates a model, a context,
 * runs forward passes, resizes, trains a step (and saves/loads a checkpoint once those exist) is
 * run once to count its allocations, then once for every k with the k-th allocation failing.
 * Each run must end in a clean MAE_ERR_NOMEM from the call that made the failing allocation,
 * leave that call's outputs untouched, and, once everything is freed, leave no live block. */
#include <stdio.h>
#include <unistd.h>
#include "testutil.h"

/* ---- the counting, failing allocator -------------------------------------------------------- */

typedef struct fault_state {
    long calls;        /* allocations asked for so far */
    long fail_at;      /* the allocation that fails (1-based); 0 = none */
    long live;         /* blocks allocated and not yet freed */
    long frees_of_unknown;
} fault_state;

static fault_state fs;

static void *fault_alloc(void *user, size_t size)
{
    fault_state *s = user;
    s->calls++;
    if (s->calls == s->fail_at)
        return NULL;
    void *p = malloc(size);
    if (p)
        s->live++;
    return p;
}

static void fault_free(void *user, void *p)
{
    fault_state *s = user;
    if (!p)
        return;
    if (s->live <= 0)
        s->frees_of_unknown++;
    s->live--;
    free(p);
}

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
    long before_ = fs.calls; \
    mae_status s_ = (expr); \
    if (s_ != MAE_OK) { o.status = s_; o.step = name; o.calls_before = before_; goto done; } \
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
    void *const sentinel = &fs;

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
    t = sentinel;
    STEP("mae_trainer_create", mae_trainer_create(m, 2, &t));
    STEP("mae_trainer_set_threads", mae_trainer_set_threads(t, 2));
    STEP("mae_trainer_forward_backward", mae_trainer_forward_backward(t, imgs, 2, NULL, &loss));
    STEP("mae_trainer_step", mae_trainer_step(t));
    if (have_files) {
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

int main(void)
{
    snprintf(ckpt_path, sizeof ckpt_path, "/tmp/mae_test_faults_%ld.safetensors", (long)getpid());
    mae_allocator a = { fault_alloc, fault_free, &fs };
    CHECK_OK(mae_set_allocator(&a));

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

    /* the counting run: every step succeeds */
    memset(&fs, 0, sizeof fs);
    outcome full = run_sequence();
    CHECK(full.status == MAE_OK, "the sequence fails without faults at %s: %s", full.step, mae_last_error());
    CHECK(fs.live == 0 && fs.frees_of_unknown == 0, "the clean run leaves %ld live blocks", fs.live);
    long total = fs.calls;
    CHECK(total > 10, "only %ld allocations counted: the hook is not used", total);

    for (long k = 1; k <= total; k++) {
        memset(&fs, 0, sizeof fs);
        fs.fail_at = k;
        outcome o = run_sequence();
        /* every allocation of the sequence is one that can fail, and each failure surfaces */
        CHECK(o.status == MAE_ERR_NOMEM, "k=%ld: status %s at %s (%s)", k, mae_status_str(o.status), o.step, mae_last_error());
        CHECK(o.status == MAE_OK || (o.calls_before < k && fs.calls >= k),
              "k=%ld: %s failed, but the failing allocation was made elsewhere", k, o.step);
        CHECK(!o.outputs_touched, "k=%ld: %s wrote its output on failure", k, o.step);
        CHECK(mae_last_error()[0] != '\0', "k=%ld: no message", k);
        CHECK(fs.live == 0, "k=%ld (failing in %s): %ld blocks leak", k, o.step, fs.live);
        CHECK(fs.frees_of_unknown == 0, "k=%ld: a block was freed twice", k);
    }
    CHECK_OK(mae_set_allocator(NULL));
    remove(ckpt_path);
    if (tu_failures == 0)
        printf("test_faults: %ld allocations in the sequence%s; each made to fail in turn, each a clean NOMEM with no leak\n",
           total, have_files && have_trainer_files ? " (with checkpoints)"
                  : have_files ? " (with model checkpoints; trainer checkpoints not implemented yet)"
                  : " (checkpoints not implemented yet: left out)");
    return tu_finish("test_faults");
}
