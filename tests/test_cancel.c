/* Cancelling inside the big products (issue 15): with an abort callback the library asks it on
 * the caller's thread before every macro-tile of a matrix product and every item of the other
 * parallel loops, and every thread stops at its next check once it said stop. Checked here:
 *   - the latency bound, counted in tiles (not wall time): after the stop each lane begins at
 *     most one more macro-tile of the product, and the callback is never asked again;
 *   - a scope whose callback never fires changes no bit, on 1 to 4 threads, and nothing changes
 *     the result of a later product on the same exec (reuse);
 *   - a cancel whose flag another thread sets, in a large-batch forward on 3 threads: the call
 *     returns MAE_ERR_ABORTED, the context's next call is bitwise its twin's;
 *   - the classifier's forward (its own block loop) likewise;
 *   - a trainer cancelled inside a forward product on 2 threads keeps its gradients, and its
 *     step is bitwise the twin's that was never cancelled.
 * test_hooks checks every check point in turn on one thread. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include "testutil.h"
#include "../src/kernels/kernels.h"
#include "../src/util/util.h"

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

typedef struct { int calls, fire_at; } counter;   /* fires (returns 1) from call number fire_at on */
static int count_abort(void *user)
{
    counter *k = user;
    return k->calls++ >= k->fire_at && k->fire_at >= 0;
}

/* ---- the product: tiles after the stop ----------------------------------------------------- */

enum { M = 1024, N = 768, K = 256 };

typedef struct product {
    const mae_kernels *k;
    float *A, *W, *wp, *bias, *out;
    mae_exec ex;
    float *scratch;
} product;

static void product_init(product *p, const mae_kernels *k)
{
    memset(p, 0, sizeof *p);
    p->k = k;
    p->A = tu_malloc((size_t)M * K * sizeof(float));
    p->W = tu_malloc((size_t)N * K * sizeof(float));
    p->bias = tu_malloc((size_t)N * sizeof(float));
    p->out = tu_malloc((size_t)M * N * sizeof(float));
    tu_fill(p->A, (size_t)M * K, -1, 1);
    tu_fill(p->W, (size_t)N * K, -1, 1);
    tu_fill(p->bias, (size_t)N, -1, 1);
    size_t pf = k->pack_floats(N, K);
    p->wp = p->W;
    if (pf) {
        p->wp = tu_malloc(pf * sizeof(float));
        k->pack(p->wp, p->W, N, K);
    }
    size_t per = k->scratch_floats(1, K > N ? K : N);
    p->scratch = tu_malloc(per * 4 * sizeof(float));
    p->ex.scratch = p->scratch;
    p->ex.scratch_per_thread = per;
}

static void product_free(product *p)
{
    if (p->wp != p->W)
        free(p->wp);
    free(p->A); free(p->W); free(p->bias); free(p->out); free(p->scratch);
}

/* out = A·Wᵀ + bias, GELU, on nt threads; with a scope when abort is given. */
static void product_run(product *p, int nt, counter *abort, mae_cancel *scope)
{
    p->ex.nthreads = nt;
    if (abort)
        mae_cancel_begin(scope, count_abort, abort);
    p->k->linear(&p->ex, p->out, p->A, p->wp, p->bias, NULL, M, N, K, MAE_ACT_GELU);
    if (abort)
        mae_cancel_end(scope);
}

static void test_tiles(const char *table)
{
    const mae_kernels *k = mae_kernels_get(table);
    if (!k) {
        printf("table %s: not on this CPU, skipped\n", table);
        return;
    }
    product p;
    product_init(&p, k);
    size_t n = (size_t)M * N;
    float *ref = tu_malloc(n * sizeof(float));
    product_run(&p, 1, NULL, NULL);
    memcpy(ref, p.out, n * sizeof(float));

    /* a silent callback: the same bits on every thread count; the product's tiles per count
     * (the split over threads changes where the m blocks start, so their number) */
    long all[5] = { 0 };
    for (int nt = 1; nt <= 4; nt++) {
        counter never = { 0, -1 };
        mae_cancel scope;
        tu_fill(p.out, n, -9, 9);
        product_run(&p, nt, &never, &scope);
        CHECK(same_bits(p.out, ref, n), "%s, %d threads: a silent abort callback changed the product", table, nt);
        CHECK(!mae_cancel_stopped(&scope), "%s, %d threads: stopped without being asked to", table, nt);
        all[nt] = mae_atomic_long_load(&scope.tiles);
        CHECK(all[nt] >= 8, "%s, %d threads: only %ld macro-tiles: too small to test the latency", table, nt, all[nt]);
    }

    /* cancelled at each of the caller's first checks: never asked again, and every lane begins
     * at most one tile after the stop (nt - 1 of them besides the caller's). On more threads the
     * caller may find every item taken before its check number `at` comes: then the product
     * simply completes; at least one of the cancels must land. */
    for (int nt = 1; nt <= 4; nt++) {
        int landed = 0, tries = nt == 1 ? 6 : 4;
        for (int at = 0; at < tries; at++) {
            counter c = { 0, at };
            mae_cancel scope;
            tu_fill(p.out, n, -9, 9);
            product_run(&p, nt, &c, &scope);
            long tiles = mae_atomic_long_load(&scope.tiles), after = tiles - scope.tiles_at_stop;
            if (!mae_cancel_stopped(&scope)) {
                CHECK(nt > 1, "%s, one thread, stop at check %d: not stopped", table, at);
                CHECK(c.calls <= at && same_bits(p.out, ref, n), "%s, %d threads, stop at check %d: not stopped "
                      "after %d calls, or the product is not complete", table, nt, at, c.calls);
                continue;
            }
            landed++;
            CHECK(c.calls == at + 1, "%s, %d threads, stop at check %d: asked %d times", table, nt, at, c.calls);
            CHECK(after >= 0 && after <= nt - 1, "%s, %d threads, stop at check %d: %ld tiles begun after the stop "
                  "(at most %d)", table, nt, at, after, nt - 1);
            /* on one thread the stop cuts the product short (check 0 is the one before the only
             * item, then one before each tile); on more, the other lanes may have done every
             * tile before the caller's check came (a preempted caller) */
            CHECK(nt > 1 || tiles == (at > 0 ? at - 1 : 0), "%s, one thread, stop at check %d: %ld tiles ran", table,
                  at, tiles);
        }
        CHECK(landed > 0, "%s, %d threads: none of the cancels landed", table, nt);
    }

    /* the exec is reusable: a product after the cancels gives the same bits */
    tu_fill(p.out, n, -9, 9);
    product_run(&p, 3, NULL, NULL);
    CHECK(same_bits(p.out, ref, n), "%s: a product after cancelled ones differs", table);
    printf("table %s: %ld macro-tiles on one thread; stopped within one tile per thread on 1-4 threads\n", table, all[1]);
    free(ref);
    product_free(&p);
}

/* ---- a forward pass cancelled from another thread ------------------------------------------ */

typedef struct remote {
    atomic_int flag;          /* set by the other thread: the host's "cancel" button */
    atomic_int asked;         /* the caller's callback asks the other thread to press it */
    int calls, press_at;
} remote;

static void *presser(void *arg)
{
    remote *r = arg;
    while (!atomic_load(&r->asked))
        sched_yield();
    atomic_store(&r->flag, 1);
    return NULL;
}

/* The host's callback: reads the flag; at call press_at it has the other thread set it and
 * waits for that, so that the cancel lands at a known check inside the forward pass. */
static int remote_abort(void *user)
{
    remote *r = user;
    if (r->calls++ == r->press_at) {
        atomic_store(&r->asked, 1);
        while (!atomic_load(&r->flag))
            sched_yield();
    }
    return atomic_load(&r->flag);
}

static mae_model *small_model(uint64_t seed, int *img)
{
    mae_config cfg;
    mae_model *m = NULL;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    *img = cfg.img_size;
    CHECK_OK(mae_model_create(&cfg, seed, &m));
    if (!m)
        exit(tu_finish("test_cancel"));
    return m;
}

static void test_forward(void)
{
    enum { BATCH = 48 };
    int img;
    mae_model *m = small_model(5, &img);
    mae_ctx *c = NULL, *twin = NULL;
    CHECK_OK(mae_ctx_create(m, BATCH, &c));
    CHECK_OK(mae_ctx_create(m, BATCH, &twin));
    if (!c || !twin)
        return;
    int L, keep, P;
    CHECK_OK(mae_ctx_get_dims(c, &L, &keep, &P));
    size_t npix = (size_t)BATCH * 3 * img * img, npred = (size_t)BATCH * L * P;
    float *imgs = tu_malloc(npix * sizeof(float));
    float *pred = tu_malloc(npred * sizeof(float)), *pred2 = tu_malloc(npred * sizeof(float));
    tu_fill(imgs, npix, -1, 1);
    float loss, loss2;

    /* a silent callback on 1..4 threads: the twin's bits (one thread, no callback) */
    CHECK_OK(mae_ctx_set_threads(twin, 1));
    counter never = { 0, -1 };
    CHECK_OK(mae_ctx_set_abort(c, count_abort, &never));
    for (int nt = 1; nt <= 4; nt++) {
        CHECK_OK(mae_ctx_set_threads(c, nt));
        CHECK_OK(mae_forward(c, imgs, BATCH, NULL, &loss, pred, NULL, NULL));
        CHECK_OK(mae_forward(twin, imgs, BATCH, NULL, &loss2, pred2, NULL, NULL));
        CHECK(loss == loss2 && same_bits(pred, pred2, npred), "%d threads with a silent callback: not the twin's bits", nt);
    }

    /* cancelled from another thread inside the first blocks, on 3 threads. The caller checks at
     * least once per parallel loop (before it claims its first item; more when it claims more),
     * and a forward pass of this model runs more than 20 loops, so check `at` always comes. */
    CHECK_OK(mae_ctx_set_threads(c, 3));
    for (int at = 1; at < 20; at += 3) {
        remote r = { 0, 0, 0, at };
        atomic_init(&r.flag, 0);
        atomic_init(&r.asked, 0);
        pthread_t th;
        CHECK(pthread_create(&th, NULL, presser, &r) == 0, "pthread_create");
        CHECK_OK(mae_ctx_set_abort(c, remote_abort, &r));
        mae_status s = mae_forward(c, imgs, BATCH, NULL, &loss, pred, NULL, NULL);
        CHECK(atomic_load(&r.asked), "cancel at check %d: the forward pass asked only %d times", at, r.calls);
        atomic_store(&r.asked, 1);   /* so that the other thread ends even then */
        pthread_join(th, NULL);
        CHECK(s == MAE_ERR_ABORTED, "cancel at check %d from another thread: %s", at, mae_status_str(s));
        CHECK(r.calls == at + 1, "cancel at check %d: the callback was asked %d times", at, r.calls);
        CHECK_OK(mae_ctx_set_abort(c, NULL, NULL));
        CHECK_OK(mae_forward(c, imgs, BATCH, NULL, &loss, pred, NULL, NULL));
        CHECK_OK(mae_forward(twin, imgs, BATCH, NULL, &loss2, pred2, NULL, NULL));
        CHECK(loss == loss2 && same_bits(pred, pred2, npred), "after a cancel at check %d the next call is not the twin's", at);
    }
    free(imgs); free(pred); free(pred2);
    mae_ctx_free(c);
    mae_ctx_free(twin);
    mae_model_free(m);
}

/* ---- the classifier's forward: its own block loop, the same checks --------------------------- */

static void test_classifier(void)
{
    enum { BATCH = 8, CLASSES = 10 };
    int img;
    mae_model *m = small_model(4, &img);
    mae_classifier *cl = NULL;
    const mae_model *em = NULL;
    mae_ctx *c = NULL, *twin = NULL;
    CHECK_OK(mae_classifier_create(m, CLASSES, 1, 3, &cl));
    if (cl)
        CHECK_OK(mae_classifier_model(cl, &em));
    if (em) {
        CHECK_OK(mae_ctx_create(em, BATCH, &c));
        CHECK_OK(mae_ctx_create(em, BATCH, &twin));
    }
    if (!c || !twin)
        return;
    CHECK_OK(mae_ctx_set_threads(c, 1));   /* a fixed count of checks */
    size_t npix = (size_t)BATCH * 3 * img * img;
    float *imgs = tu_malloc(npix * sizeof(float)), out[BATCH * CLASSES], ref[BATCH * CLASSES];
    tu_fill(imgs, npix, -1, 1);
    counter never = { 0, -1 };
    CHECK_OK(mae_ctx_set_abort(c, count_abort, &never));
    CHECK_OK(mae_classifier_forward(cl, c, imgs, BATCH, out));
    CHECK_OK(mae_classifier_forward(cl, twin, imgs, BATCH, ref));
    CHECK(same_bits(out, ref, BATCH * CLASSES), "a silent callback changed the logits");
    CHECK(never.calls > 8, "the classifier asked abort only %d times: not inside its blocks", never.calls);
    for (int at = 1; at < never.calls; at += 5) {
        counter k = { 0, at };
        CHECK_OK(mae_ctx_set_abort(c, count_abort, &k));
        mae_status s = mae_classifier_forward(cl, c, imgs, BATCH, out);
        CHECK(s == MAE_ERR_ABORTED && k.calls == at + 1, "classifier, cancel at check %d: %s after %d calls", at,
              mae_status_str(s), k.calls);
    }
    CHECK_OK(mae_ctx_set_abort(c, NULL, NULL));
    CHECK_OK(mae_classifier_forward(cl, c, imgs, BATCH, out));
    CHECK(same_bits(out, ref, BATCH * CLASSES), "the classifier after cancelled calls differs");
    free(imgs);
    mae_ctx_free(c);
    mae_ctx_free(twin);
    mae_classifier_free(cl);
    mae_model_free(m);
}

/* ---- a training step cancelled inside a product -------------------------------------------- */

static void test_trainer(void)
{
    enum { BATCH = 16 };
    int img;
    mae_model *ma = small_model(9, &img), *mb = small_model(9, &img);
    mae_trainer *a = NULL, *b = NULL;
    CHECK_OK(mae_trainer_create(ma, BATCH, &a));
    CHECK_OK(mae_trainer_create(mb, BATCH, &b));
    if (!a || !b)
        return;
    CHECK_OK(mae_trainer_set_threads(a, 2));
    CHECK_OK(mae_trainer_set_threads(b, 1));
    size_t npix = (size_t)BATCH * 3 * img * img, n, n2;
    float *imgs = tu_malloc(npix * sizeof(float)), la, lb, *ga, *gb;
    tu_fill(imgs, npix, -1, 1);
    CHECK_OK(mae_trainer_grads(a, &ga, &n));
    CHECK_OK(mae_trainer_grads(b, &gb, &n2));
    float *before = tu_malloc(n * sizeof(float));
    CHECK_OK(mae_trainer_forward_backward(a, imgs, BATCH, NULL, &la));
    CHECK_OK(mae_trainer_forward_backward(b, imgs, BATCH, NULL, &lb));
    for (int at = 1; at < 20; at += 5) {   /* below the loops of a forward pass */
        memcpy(before, ga, n * sizeof(float));
        counter k = { 0, at };
        CHECK_OK(mae_trainer_set_abort(a, count_abort, &k));
        mae_status s = mae_trainer_forward_backward(a, imgs, BATCH, NULL, &la);
        CHECK(s == MAE_ERR_ABORTED, "trainer, cancel at check %d: %s", at, mae_status_str(s));
        CHECK(k.calls == at + 1, "trainer, cancel at check %d: asked %d times", at, k.calls);
        CHECK(same_bits(ga, before, n), "trainer, cancel at check %d: the gradients changed", at);
    }
    CHECK_OK(mae_trainer_set_abort(a, NULL, NULL));
    CHECK_OK(mae_trainer_step(a));
    CHECK_OK(mae_trainer_step(b));
    CHECK_OK(mae_trainer_forward_backward(a, imgs, BATCH, NULL, &la));
    CHECK_OK(mae_trainer_forward_backward(b, imgs, BATCH, NULL, &lb));
    CHECK(la == lb && same_bits(ga, gb, n), "trainer: after cancelled calls and a step, not the twin's (loss %g vs %g)",
          (double)la, (double)lb);
    free(imgs); free(before);
    mae_trainer_free(a); mae_trainer_free(b);
    mae_model_free(ma); mae_model_free(mb);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(151);
    TU_RUN("tiles/avx2", test_tiles("avx2"));
    TU_RUN("tiles/avx512", test_tiles("avx512"));
    TU_RUN("tiles/neon", test_tiles("neon"));
    TU_RUN("forward", test_forward());
    TU_RUN("classifier", test_classifier());
    TU_RUN("trainer", test_trainer());
    return tu_finish("test_cancel");
}
