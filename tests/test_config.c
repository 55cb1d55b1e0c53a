/* The config tables (src/model/config_fields.h): every field of mae_config and mae_train_config
 * is listed; random valid configs survive model save/load and trainer save/load bit for bit,
 * field by field; each field's range is enforced at both of its ends; a trainer checkpoint whose
 * architecture differs in any compared field is refused naming it; the saved position-table
 * decision ("learned_pos") is restored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"
#include "../src/model/model.h"
#include "../src/model/config_fields.h"
#include "../src/io/safetensors.h"

static char dir[64];

static size_t kind_size(int kind)
{
    return kind == MAE_CF_DOUBLE ? sizeof(double) : kind == MAE_CF_FLOAT ? sizeof(float) : sizeof(int32_t);
}

/* The table covers the struct: after struct_size, the fields tile it without gaps up to the
 * padding at the end. A field appended to mae.h but not to the table fails here. */
static void check_coverage(const char *what, const mae_field *f, int n, size_t struct_size, size_t align)
{
    size_t used = sizeof(uint32_t), end = sizeof(uint32_t);
    for (int i = 0; i < n; i++) {
        size_t e = f[i].pub_off + kind_size(f[i].kind);
        used += kind_size(f[i].kind);
        end = e > end ? e : end;
        for (int j = 0; j < i; j++)
            CHECK(f[j].pub_off != f[i].pub_off, "%s: %s and %s share an offset", what, f[j].name, f[i].name);
    }
    size_t padded = (end + align - 1) / align * align;
    CHECK(padded == struct_size, "%s: the table ends at %zu, the struct at %zu: a field is missing from the table", what, end, struct_size);
    CHECK(used + 4 >= end, "%s: the table leaves a gap (%zu of %zu bytes)", what, used, end);
}

static int pick(int lo, int hi) { return lo + (int)(tu_uniform() * (hi - lo + 1)) % (hi - lo + 1); }

static mae_config random_config(void)
{
    mae_config c;
    CHECK_OK(mae_config_init(&c, sizeof c, "tiny"));
    c.patch_size = pick(1, 3) * 2;
    c.img_size = c.patch_size * pick(1, 4);
    if (tu_uniform() < 0.5) {   /* a rectangular run size */
        c.img_height = c.patch_size * pick(1, 4);
        c.img_width = c.patch_size * pick(1, 4);
    }
    c.in_chans = pick(1, 3);
    c.num_heads = pick(1, 3);
    c.embed_dim = 4 * c.num_heads * pick(1, 3);
    c.depth = pick(1, 2);
    c.decoder_num_heads = pick(1, 3);
    c.decoder_embed_dim = 4 * c.decoder_num_heads * pick(1, 2);
    c.decoder_depth = pick(1, 2);
    c.mlp_ratio = (float)(0.5 + 3.5 * tu_uniform());
    c.norm_pix_loss = pick(0, 1);
    c.mask_ratio = (float)(0.9 * tu_uniform());
    c.layer_norm_eps = (float)pow(10.0, -7.0 + 5.0 * tu_uniform());
    return c;
}

static mae_config config_of(const mae_model *m)
{
    mae_config c;
    memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    CHECK_OK(mae_model_get_config(m, &c));
    return c;
}

/* Every table field of two public configs, bitwise. */
static int same_fields(const char *what, const mae_field *f, int n, const void *a, const void *b)
{
    int ok = 1;
    for (int i = 0; i < n; i++) {
        int same = memcmp((const char *)a + f[i].pub_off, (const char *)b + f[i].pub_off, kind_size(f[i].kind)) == 0;
        CHECK(same, "%s: field %s differs after the round trip", what, f[i].name);
        ok &= same;
    }
    return ok;
}

static void test_model_round_trip(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    for (int rep = 0; rep < 12; rep++) {
        mae_config c = random_config();
        mae_model *m = NULL, *r = NULL;
        CHECK_OK(mae_model_create(&c, (uint64_t)rep, &m));
        if (!m)
            continue;
        mae_config want = config_of(m);
        /* what the caller set comes back (0 run size = img_size) */
        mae_config asked = c;
        if (!asked.img_height && !asked.img_width)
            asked.img_height = asked.img_width = asked.img_size;
        same_fields("create", mae_config_fields, MAE_N_CONFIG_FIELDS, &asked, &want);
        CHECK_OK(mae_model_save(m, path));
        CHECK_OK(mae_model_load(path, &r));
        if (r) {
            mae_config got = config_of(r);
            same_fields("model file", mae_config_fields, MAE_N_CONFIG_FIELDS, &want, &got);
        }
        mae_model_free(r);
        mae_model_free(m);
    }
    remove(path);
}

static mae_train_config random_train_config(void)
{
    mae_train_config t;
    CHECK_OK(mae_train_config_init(&t, sizeof t));
    t.accum_iter = pick(1, 4);
    t.blr = tu_uniform() * 1e-3;
    t.lr = tu_uniform() < 0.5 ? 0.0 : tu_uniform() * 1e-2;
    t.min_lr = tu_uniform() * 1e-6;
    t.weight_decay = tu_uniform() * 0.1;
    t.beta1 = tu_uniform() * 0.99;
    t.beta2 = tu_uniform() * 0.999;
    t.eps = 1e-9 + tu_uniform() * 1e-6;
    t.warmup_epochs = tu_uniform() * 3;
    t.epochs = t.warmup_epochs + 0.5 + tu_uniform() * 10;
    t.iters_per_epoch = pick(0, 50);
    t.batch_size = pick(0, 8);
    t.world_size = pick(1, 4);
    t.clip_grad = (float)(tu_uniform() * 2);
    t.train_pos = pick(-1, 1);
    return t;
}

static void test_trainer_round_trip(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/trainer.safetensors", dir);
    float img[2 * 3 * 32 * 32];
    for (int rep = 0; rep < 6; rep++) {
        mae_config c;
        CHECK_OK(mae_config_init(&c, sizeof c, "tiny"));
        c.norm_pix_loss = rep & 1;
        c.layer_norm_eps = (float)pow(10.0, -7.0 + 5.0 * tu_uniform());
        mae_model *a = NULL, *b = NULL;
        CHECK_OK(mae_model_create(&c, 1, &a));
        CHECK_OK(mae_model_create(&c, 2, &b));
        mae_trainer *ta = NULL, *tb = NULL;
        CHECK_OK(mae_trainer_create(a, 2, &ta));
        CHECK_OK(mae_trainer_create(b, 2, &tb));
        if (!ta || !tb)
            return;
        mae_train_config tc = random_train_config();
        CHECK_OK(mae_trainer_set_config(ta, &tc));
        CHECK_OK(mae_trainer_set_mask_ratio(ta, (float)(0.3 + 0.6 * tu_uniform())));
        tu_fill(img, sizeof img / sizeof *img, -1, 1);
        CHECK_OK(mae_trainer_forward_backward(ta, img, 2, NULL, NULL));
        CHECK_OK(mae_trainer_step(ta));
        CHECK_OK(mae_trainer_save(ta, path));
        CHECK_OK(mae_trainer_load(tb, path));
        mae_train_config want, got;
        want.struct_size = got.struct_size = sizeof want;
        CHECK_OK(mae_trainer_get_config(ta, &want));
        CHECK_OK(mae_trainer_get_config(tb, &got));
        same_fields("trainer checkpoint", mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, &want, &got);
        CHECK(ta->step == tb->step && ta->ratio == tb->ratio && ta->train_pos == tb->train_pos &&
              ta->train_dpos == tb->train_dpos && memcmp(&ta->grad_norm, &tb->grad_norm, sizeof ta->grad_norm) == 0,
              "rep %d: the trainer's counters differ after the round trip", rep);
        /* the checkpoint is a model file with the model's config */
        mae_model *r = NULL;
        CHECK_OK(mae_model_load(path, &r));
        if (r) {
            mae_config ca = config_of(a), cr = config_of(r);
            same_fields("trainer checkpoint as a model", mae_config_fields, MAE_N_CONFIG_FIELDS, &ca, &cr);
        }
        mae_model_free(r);
        mae_trainer_free(ta);
        mae_trainer_free(tb);
        mae_model_free(a);
        mae_model_free(b);
    }
    remove(path);
}

/* Each end of each field's range: the value just outside is refused naming the field, the end
 * itself (when closed) is accepted by the range check. */
static void test_ranges(void)
{
    for (int i = 0; i < MAE_N_CONFIG_FIELDS; i++) {
        const mae_field *f = &mae_config_fields[i];
        if (f->kind == MAE_CF_BOOL)
            continue;
        for (int end = 0; end < 2; end++) {
            double edge = end ? f->hi : f->lo;
            int open = f->flags & (end ? MAE_CF_OPEN_HI : MAE_CF_OPEN_LO);
            double out = open ? edge : f->kind == MAE_CF_INT ? edge + (end ? 1 : -1) : nextafter(edge, end ? INFINITY : -INFINITY);
            if (f->kind == MAE_CF_FLOAT && !open)
                out = nextafterf((float)edge, end ? INFINITY : -INFINITY);
            mae_cfg c;
            mae_cfg_defaults(&c);
            mae_field_set(f, &c, out);
            mae_status s = mae_cfg_finish(&c);
            CHECK(s == MAE_ERR_INVALID_ARG && strstr(mae_last_error(), f->name), "%s = %g: %s (%s)", f->name, out,
                  mae_status_str(s), mae_last_error());
            CHECK(mae_field_in_range(f, edge) == !open, "%s: the %s end %g", f->name, end ? "upper" : "lower", edge);
        }
    }
    for (int i = 0; i < MAE_N_TRAIN_CONFIG_FIELDS; i++) {
        const mae_field *f = &mae_train_config_fields[i];
        if (f->flags & MAE_CF_ANY)
            continue;
        for (int end = 0; end < 2; end++) {
            double edge = end ? f->hi : f->lo;
            int open = f->flags & (end ? MAE_CF_OPEN_HI : MAE_CF_OPEN_LO);
            if (isinf(edge) || (f->kind == MAE_CF_INT && (edge >= INT32_MAX || edge <= INT32_MIN)))
                continue;   /* nothing lies beyond */
            double out = open ? edge : f->kind == MAE_CF_INT ? edge + (end ? 1 : -1) : nextafter(edge, end ? INFINITY : -INFINITY);
            if (f->kind == MAE_CF_FLOAT && !open)
                out = nextafterf((float)edge, end ? INFINITY : -INFINITY);
            mae_train_config t;
            CHECK_OK(mae_train_config_init(&t, sizeof t));
            mae_field_set(f, &t, out);
            mae_status s = mae_fields_check("test", mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, &t, 0);
            CHECK(s == MAE_ERR_INVALID_ARG && strstr(mae_last_error(), f->name), "trainer %s = %g: %s", f->name, out,
                  mae_status_str(s));
        }
        mae_train_config t;
        CHECK_OK(mae_train_config_init(&t, sizeof t));
        if (f->kind == MAE_CF_INT)
            continue;
        mae_field_set(f, &t, NAN);
        CHECK(mae_fields_check("test", mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, &t, 0) == MAE_ERR_INVALID_ARG,
                  "trainer %s = NaN accepted", f->name);
    }
}

/* A trainer checkpoint resumes only into a model of the same architecture: here models with the
 * same tensor shapes that differ in one compared field (heads, eps, norm_pix_loss, the run size
 * 16x32 against 32x16). */
static void test_arch_mismatch(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/arch.safetensors", dir);
    mae_config base;
    CHECK_OK(mae_config_init(&base, sizeof base, "tiny"));
    base.img_height = 16;
    base.img_width = 32;
    mae_model *m = NULL;
    mae_trainer *t = NULL;
    CHECK_OK(mae_model_create(&base, 3, &m));
    CHECK_OK(mae_trainer_create(m, 1, &t));
    CHECK_OK(mae_trainer_save(t, path));
    struct { const char *field; mae_config c; } cases[5];
    for (int i = 0; i < 5; i++)
        cases[i].c = base;
    cases[0].field = "num_heads";         cases[0].c.num_heads = 2;
    cases[1].field = "decoder_num_heads"; cases[1].c.decoder_num_heads = 2;
    cases[2].field = "layer_norm_eps";    cases[2].c.layer_norm_eps = 1e-5f;
    cases[3].field = "norm_pix_loss";     cases[3].c.norm_pix_loss = 1;
    cases[4].field = "img_height";        cases[4].c.img_height = 32; cases[4].c.img_width = 16;
    for (int i = 0; i < 5; i++) {
        mae_model *o = NULL;
        mae_trainer *to = NULL;
        CHECK_OK(mae_model_create(&cases[i].c, 4, &o));
        CHECK_OK(mae_trainer_create(o, 1, &to));
        if (!to)
            continue;
        mae_status s = mae_trainer_load(to, path);
        CHECK(s == MAE_ERR_SHAPE && strstr(mae_last_error(), cases[i].field), "%s differs: %s (%s)", cases[i].field,
              mae_status_str(s), mae_last_error());
        mae_trainer_free(to);
        mae_model_free(o);
    }
    /* the same architecture with other weights and a default mask ratio of its own loads */
    mae_config same = base;
    same.mask_ratio = 0.5f;
    mae_model *o = NULL;
    mae_trainer *to = NULL;
    CHECK_OK(mae_model_create(&same, 5, &o));
    CHECK_OK(mae_trainer_create(o, 1, &to));
    CHECK_OK(mae_trainer_load(to, path));
    mae_trainer_free(to);
    mae_model_free(o);
    mae_trainer_free(t);
    mae_model_free(m);
    remove(path);
}

/* Rewrites one metadata value of a safetensors file (the tensors copied as they are). */
static void set_meta(const char *path, const char *key, const char *value)
{
    mae_st_file f;
    CHECK_OK(mae_st_open(path, &f));
    mae_st_out *out = tu_malloc((size_t)f.n * sizeof *out);
    float **bufs = tu_malloc((size_t)f.n * sizeof *bufs);
    for (int i = 0; i < f.n; i++) {
        bufs[i] = tu_malloc(f.t[i].count * sizeof(float));
        CHECK_OK(mae_st_read_f32(&f, &f.t[i], bufs[i], f.t[i].count));
        out[i] = (mae_st_out){ f.t[i].name, bufs[i], f.t[i].ndim, f.t[i].shape };
    }
    mae_st_meta *meta = tu_malloc((size_t)f.n_meta * sizeof *meta);
    int found = 0;
    for (int i = 0; i < f.n_meta; i++) {
        snprintf(meta[i].key, sizeof meta[i].key, "%s", f.meta[i].key);
        snprintf(meta[i].value, sizeof meta[i].value, "%s", f.meta[i].value);
        if (strcmp(meta[i].key, key) == 0) {
            snprintf(meta[i].value, sizeof meta[i].value, "%s", value);
            found = 1;
        }
    }
    CHECK(found, "metadata %s is not in the file", key);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    CHECK_OK(mae_st_write(tmp, out, f.n, meta, f.n_meta));
    for (int i = 0; i < f.n; i++)
        free(bufs[i]);
    free(bufs);
    free(out);
    free(meta);
    mae_st_close(&f);
    CHECK(rename(tmp, path) == 0, "rename %s", tmp);
}

/* train_pos -1 decides from the weights whether the position table trains. A run that trains a
 * table sitting (within the sin-cos test's tolerance) on the sin-cos values saved that decision
 * as learned_pos; the resumed trainer must keep training it, with its moments. */
static void test_learned_pos(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/pos.safetensors", dir);
    mae_config c;
    CHECK_OK(mae_config_init(&c, sizeof c, "tiny"));
    mae_model *a = NULL, *b = NULL;
    CHECK_OK(mae_model_create(&c, 6, &a));
    CHECK_OK(mae_model_create(&c, 7, &b));
    mae_trainer *ta = NULL, *tb = NULL;
    CHECK_OK(mae_trainer_create(a, 2, &ta));
    CHECK_OK(mae_trainer_create(b, 2, &tb));
    if (!ta || !tb)
        return;
    mae_train_config tc;
    CHECK_OK(mae_train_config_init(&tc, sizeof tc));
    tc.train_pos = 1;
    tc.lr = 1e-9;   /* the table moves far less than the 1e-6 tolerance */
    CHECK_OK(mae_trainer_set_config(ta, &tc));
    float img[2 * 3 * 32 * 32];
    tu_fill(img, sizeof img / sizeof *img, -1, 1);
    CHECK_OK(mae_trainer_forward_backward(ta, img, 2, NULL, NULL));
    CHECK_OK(mae_trainer_step(ta));
    CHECK_OK(mae_trainer_save(ta, path));
    set_meta(path, "trainer.train_pos", "-1");   /* as the run with train_pos -1 writes it */
    CHECK_OK(mae_trainer_load(tb, path));
    const float *g = NULL;
    size_t n = 0;
    CHECK(mae_trainer_grad(tb, "pos_embed", &g, &n) == MAE_OK, "the resumed trainer froze the position table "
          "the checkpoint says was learned: %s", mae_last_error());
    const mae_tensor *pt = mae_model_find(a, "pos_embed");
    CHECK(pt && memcmp(ta->exp_avg_sq + pt->offset, tb->exp_avg_sq + pt->offset, pt->count * sizeof(float)) == 0,
          "the position table's moments were not restored");
    set_meta(path, "learned_pos", "maybe");
    CHECK(mae_trainer_load(tb, path) == MAE_ERR_FORMAT && strstr(mae_last_error(), "learned_pos"),
          "a malformed learned_pos: %s", mae_last_error());
    mae_trainer_free(ta);
    mae_trainer_free(tb);
    mae_model_free(a);
    mae_model_free(b);
    remove(path);
}

int main(void)
{
    tu_seed(12);
    snprintf(dir, sizeof dir, "/tmp/mae-config-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    check_coverage("mae_config", mae_config_fields, MAE_N_CONFIG_FIELDS, sizeof(mae_config), 4);
    check_coverage("mae_train_config", mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, sizeof(mae_train_config), 8);
    test_model_round_trip();
    test_trainer_round_trip();
    test_ranges();
    test_arch_mismatch();
    test_learned_pos();
    rmdir(dir);
    return tu_finish("test_config");
}
