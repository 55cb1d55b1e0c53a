/* Inference models hold each linear weight once, packed in its own floats ("slim"). Against a
 * reference model built from the same initialization but kept in PyTorch's layout (mae_model_alloc
 * + mae_model_init_weights + mae_model_pack): every tensor read back through mae_model_tensor
 * (also from several threads at once), the forward pass, mae_model_save's file, and training
 * steps on a slim model all equal the reference bitwise. */
#include <pthread.h>
#include <unistd.h>
#include "testutil.h"
#include "../src/model/model.h"

#define NTHREADS 4

/* the reference: the same initialization as mae_model_create, with master weights */
static mae_model *reference(const mae_config *cfg, uint64_t seed)
{
    mae_cfg c;
    mae_model *m = NULL;
    mae_cfg_from_public(&c, cfg);
    CHECK_OK(mae_cfg_finish(&c));
    CHECK_OK(mae_model_alloc(&c, &m));
    if (!m)
        exit(1);
    mae_model_init_weights(m, seed);
    CHECK_OK(mae_model_pack(m));
    CHECK(!m->slim, "mae_model_pack gave a slim model");
    return m;
}

static void check_tensors(const mae_model *s, const mae_model *ref, const char *what)
{
    int bad = 0;
    for (int i = 0; i < ref->n_tensors; i++) {
        const mae_tensor *t = &ref->tensors[i];
        const float *p = NULL, *q = NULL;
        size_t n = 0;
        CHECK_OK(mae_model_tensor(s, t->name, &p, &n, NULL, NULL));
        CHECK_OK(mae_model_tensor(s, t->name, &q, NULL, NULL, NULL));
        CHECK(p == q, "%s: %s moved between two calls", what, t->name);
        if (!p || n != t->count || memcmp(p, ref->data + t->offset, n * sizeof *p) != 0)
            bad++, fprintf(stderr, "%s: tensor %s differs\n", what, t->name);
    }
    CHECK(bad == 0, "%s: %d tensors differ from the reference", what, bad);
}

typedef struct reader { const mae_model *m; const float **got; } reader;

static void *read_all(void *arg)
{
    reader *r = arg;
    for (int i = r->m->n_tensors - 1; i >= 0; i--)   /* the other end first: more races */
        if (mae_model_tensor(r->m, r->m->tensors[i].name, &r->got[i], NULL, NULL, NULL) != MAE_OK)
            r->got[i] = NULL;
    return NULL;
}

static void check_threads(const mae_model *s, const mae_model *ref)
{
    pthread_t th[NTHREADS];
    reader r[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        r[t].m = s;
        r[t].got = tu_malloc((size_t)s->n_tensors * sizeof *r[t].got);
        CHECK(pthread_create(&th[t], NULL, read_all, &r[t]) == 0, "pthread_create");
    }
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    int bad = 0;
    for (int i = 0; i < s->n_tensors; i++) {
        const mae_tensor *t = &ref->tensors[i];
        for (int k = 0; k < NTHREADS; k++)
            bad += !r[k].got[i] || r[k].got[i] != r[0].got[i] ||
                   memcmp(r[k].got[i], ref->data + t->offset, t->count * sizeof(float)) != 0;
    }
    CHECK(bad == 0, "threads: %d tensor reads disagree", bad);
    for (int t = 0; t < NTHREADS; t++)
        free(r[t].got);
}

static void forward(const mae_model *m, const float *img, const float *noise, int B, size_t np, float *pred,
                    float *loss)
{
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, B, &c));
    tu_poison(pred, np);
    *loss = NAN;
    CHECK_OK(mae_forward(c, img, B, noise, loss, pred, NULL, NULL));
    mae_ctx_free(c);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = tu_malloc(*n + 1);
    CHECK(fread(b, 1, *n, f) == *n, "short read of %s", path);
    fclose(f);
    return b;
}

static void check_save(const mae_model *s, const mae_model *ref, const char *tag)
{
    char a[128], b[128];
    snprintf(a, sizeof a, "/tmp/mae_test_slim_%d_%s_a.safetensors", (int)getpid(), tag);
    snprintf(b, sizeof b, "/tmp/mae_test_slim_%d_%s_b.safetensors", (int)getpid(), tag);
    CHECK_OK(mae_model_save(s, a));
    CHECK_OK(mae_model_save(ref, b));
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    CHECK(x && y && na == nb && memcmp(x, y, na) == 0, "%s: the slim model's file differs from the reference's", tag);
    free(x); free(y);
    mae_model *l = NULL;
    CHECK_OK(mae_model_load(a, &l));
    if (l) {
        check_tensors(l, ref, "loaded");
        mae_model_free(l);
    }
    remove(a); remove(b);
}

/* Two steps of training on each; the slim model gets its masters back when the trainer comes. */
static void check_training(mae_model *s, mae_model *ref, const float *img, const float *noise, int B)
{
    mae_trainer *ts = NULL, *tr = NULL;
    CHECK_OK(mae_trainer_create(s, B, &ts));
    CHECK_OK(mae_trainer_create(ref, B, &tr));
    if (!ts || !tr)
        return;
    CHECK(!s->slim, "a model with a trainer is still slim");
    for (int step = 0; step < 2; step++) {
        float l1 = NAN, l2 = NAN;
        CHECK_OK(mae_trainer_forward_backward(ts, img, B, noise, &l1));
        CHECK_OK(mae_trainer_forward_backward(tr, img, B, noise, &l2));
        CHECK(memcmp(&l1, &l2, sizeof l1) == 0, "training step %d: loss %.9g vs %.9g", step, (double)l1, (double)l2);
        CHECK_OK(mae_trainer_step(ts));
        CHECK_OK(mae_trainer_step(tr));
    }
    CHECK(memcmp(s->data, ref->data, ref->lay.total * sizeof(float)) == 0, "parameters differ after two steps");
    mae_trainer_free(ts);
    mae_trainer_free(tr);
}

static void run(const char *name, const mae_config *cfg)
{
    uint64_t seed = 11;
    mae_model *s = NULL, *s2 = NULL, *ref = reference(cfg, seed);
    CHECK_OK(mae_model_create(cfg, seed, &s));
    CHECK_OK(mae_model_create(cfg, seed, &s2));
    if (!s || !s2)
        exit(1);
    /* a weight fits its own floats when the panel width divides its rows */
    int w = (int)s->k->pack_floats(1, 1), in_place = 0, linears = 0, fits = 0;
    for (int i = 0; i < s->n_tensors; i++) {
        const mae_tensor *t = &s->tensors[i];
        int linear = t->ndim >= 2 && strstr(t->name, "weight") != NULL;
        linears += linear;
        fits += linear && w && t->shape[0] % w == 0;
        in_place += t->in_place;
        CHECK(!t->in_place || linear, "%s: %s is marked packed", name, t->name);
    }
    if (w) {
        CHECK(s->slim && in_place == fits, "%s: %d of %d linears packed in place, %d fit", name, in_place, linears, fits);
        CHECK((s->packed != NULL) == (fits < linears), "%s: a separate packed copy %s", name,
              s->packed ? "exists" : "is missing");
    } else {
        CHECK(!s->slim && in_place == 0 && s->packed == NULL, "%s: the %s table packs nothing", name, s->k->name);
    }
    printf("%s (%s): %d of %d linear weights held only packed\n", name, s->k->name, in_place, linears);

    int B = 2;
    size_t nimg = (size_t)B * s->cfg.C * s->cfg.ih * s->cfg.iw, np = (size_t)B * s->cfg.L * s->cfg.P;
    float *img = tu_malloc(nimg * sizeof *img), *noise = tu_malloc((size_t)B * s->cfg.L * sizeof *noise);
    float *p1 = tu_malloc(np * sizeof *p1), *p2 = tu_malloc(np * sizeof *p2), l1, l2;
    tu_fill(img, nimg, -1, 1);
    tu_fill(noise, (size_t)B * s->cfg.L, 0, 1);
    forward(s, img, noise, B, np, p1, &l1);
    forward(ref, img, noise, B, np, p2, &l2);
    CHECK(memcmp(&l1, &l2, sizeof l1) == 0 && memcmp(p1, p2, np * sizeof *p1) == 0,
          "%s: the slim forward differs (loss %.9g vs %.9g)", name, (double)l1, (double)l2);

    check_threads(s2, ref);
    check_tensors(s, ref, name);
    check_save(s, ref, name);
    check_training(s, ref, img, noise, B);

    free(img); free(noise); free(p1); free(p2);
    mae_model_free(s); mae_model_free(s2); mae_model_free(ref);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(97);
    mae_config cfg;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    TU_RUN("tiny", run("tiny", &cfg));
    /* 3x3 one-channel patches: decoder_pred has 9 outputs, not a whole panel, and stays unpacked
     * in data with a packed copy beside it */
    cfg.img_size = 12; cfg.patch_size = 3; cfg.in_chans = 1;
    TU_RUN("p3", run("p3", &cfg));
    CHECK_OK(mae_kernels_force("scalar"));
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    TU_RUN("scalar/tiny", run("tiny", &cfg));
    return tu_finish("test_slim");
}
