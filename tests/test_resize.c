/* mae_model_resize against PyTorch: learned tables resampled as F.interpolate(bicubic,
 * align_corners=False) does, fixed sin-cos tables regenerated for the new grid, every other tensor
 * unchanged, and a forward pass on a non-square image. Data: tests/data/resize.safetensors
 * (tests/gen_resize.py). */
#include "../src/model/model.h"
#include "../src/io/safetensors.h"
#include "testutil.h"

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    mae_st_file f;
    if (mae_st_open(tu_path("tests/data/resize.safetensors"), &f) != MAE_OK) {
        fprintf(stderr, "cannot read %s: %s\n", tu_path("tests/data/resize.safetensors"), mae_last_error());
        return 2;
    }
    const int dim = 8;
    float *learned = tu_st_tensor(&f, "learned", 17 * dim);
    float *want_learned = tu_st_tensor(&f, "learned_3x5", 16 * dim);
    float *want_sincos = tu_st_tensor(&f, "sincos_3x5", 16 * dim);
    mae_st_close(&f);
    if (!learned || !want_learned || !want_sincos)
        return tu_finish("test_resize");

    mae_config cfg;
    mae_config_init(&cfg, sizeof cfg, "tiny");
    cfg.img_size = 16; cfg.patch_size = 4; cfg.in_chans = 1;
    cfg.embed_dim = dim; cfg.depth = 1; cfg.num_heads = 2;
    cfg.decoder_embed_dim = dim; cfg.decoder_depth = 1; cfg.decoder_num_heads = 2;
    mae_model *m, *r;
    CHECK_OK(mae_model_create(&cfg, 5, &m));
    memcpy(m->w.pos, learned, 17 * dim * sizeof(float));   /* a learned encoder table */

    CHECK(mae_model_resize(m, 13, 20, &r) == MAE_ERR_INVALID_ARG, "13 is not a multiple of 4");
    CHECK(mae_model_resize(m, 0, 20, &r) == MAE_ERR_INVALID_ARG, "zero height");
    CHECK(mae_model_resize(NULL, 12, 20, &r) == MAE_ERR_INVALID_ARG, "NULL model");
    CHECK_OK(mae_model_resize(m, 12, 20, &r));

    const float *pos, *dpos;
    size_t n;
    CHECK_OK(mae_model_tensor(r, "pos_embed", &pos, &n, NULL, NULL));
    CHECK(n == 16 * (size_t)dim, "pos_embed has %zu values", n);
    double e1 = tu_rel_l2(pos, want_learned, 16 * dim);
    CHECK(e1 <= 1e-6, "learned table vs torch bicubic: rel err %.3g", e1);
    CHECK_OK(mae_model_tensor(r, "decoder_pos_embed", &dpos, &n, NULL, NULL));
    double e2 = tu_rel_l2(dpos, want_sincos, 16 * dim);
    CHECK(e2 <= 1e-7, "sin-cos table vs numpy float64: rel err %.3g", e2);
    printf("resize: learned rel err %.3g, sin-cos rel err %.3g\n", e1, e2);

    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i];
        if (strstr(t->name, "pos_embed"))
            continue;
        const mae_tensor *u = mae_model_find(r, t->name);
        CHECK(u && u->count == t->count && memcmp(r->data + u->offset, m->data + t->offset, t->count * sizeof(float)) == 0,
              "%s differs after resize", t->name);
    }

    /* a forward pass on a 12x20 image: 15 patches, 3 kept */
    mae_ctx *c;
    CHECK_OK(mae_ctx_create(r, 2, &c));
    int L, keep, P;
    CHECK_OK(mae_ctx_get_dims(c, &L, &keep, &P));
    CHECK(L == 15 && keep == 3 && P == 16, "dims L=%d keep=%d P=%d", L, keep, P);
    float img[2 * 12 * 20], mask[30], latent[2 * 4 * 8], loss = NAN;
    float *pred = tu_malloc(2 * 15 * 16 * sizeof(float));
    tu_fill(img, 2 * 12 * 20, -1, 1);
    tu_poison(pred, 2 * 15 * 16);
    tu_poison(latent, 2 * 4 * 8);
    CHECK_OK(mae_forward(c, img, 2, NULL, &loss, pred, mask, latent));
    CHECK(isfinite(loss) && loss > 0, "loss %g", loss);
    CHECK(tu_rel_l2(pred, pred, 2 * 15 * 16) == 0, "pred fully written");
    CHECK(tu_rel_l2(latent, latent, 2 * 4 * 8) == 0, "latent fully written");
    int removed = 0;
    for (int i = 0; i < 30; i++)
        removed += mask[i] == 1.0f;
    CHECK(removed == 24, "%d removed patches, want 24", removed);

    /* patchify/unpatchify follow the non-square grid: a round trip is the identity */
    float back[2 * 12 * 20];
    float *patches = tu_malloc(2 * 15 * 16 * sizeof(float));
    CHECK_OK(mae_patchify(r, img, 2, patches));
    CHECK_OK(mae_unpatchify(r, patches, 2, back));
    CHECK(memcmp(back, img, sizeof img) == 0, "unpatchify(patchify(x)) != x");
    /* patch (row 1, col 2) of image 0 starts at pixel (4, 8) */
    CHECK(patches[(1 * 5 + 2) * 16] == img[4 * 20 + 8], "patch order on a 3x5 grid");

    free(patches); free(pred); free(learned); free(want_learned); free(want_sincos);
    mae_ctx_free(c);
    mae_model_free(r);
    mae_model_free(m);
    return tu_finish("test_resize");
}
