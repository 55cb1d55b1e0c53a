/* Choosing the precision a model computes in (mae.h, docs/PRECISION.md): the conversion of an
 * inference model's weights to packed bf16, under the same exclusive hold as a trainer's
 * creation (no context may read the weights while they are rewritten), and the bf16 table that
 * the conversion and a bf16 load (src/io/checkpoint.c) pack for. The public calls are in
 * src/api/model_api.c. */
#include "model.h"

mae_status mae_model_bf16_table(const mae_kernels *k, const mae_kernels **view)
{
    *view = mae_kernels_bf16_view(k);
    return *view ? MAE_OK : mae_fail(MAE_ERR_UNSUPPORTED, "model: no bf16 kernels for table '%s'", k->name);
}

mae_status mae_model_to_bf16(mae_model *m)
{
    if (m->had_masters)
        return mae_fail(MAE_ERR_STATE, "a trainer was created on this "
                        "model; bf16 is for inference models (create or load one)");
    long v = mae_atomic_long_cas(&m->live_ctx, 0, MAE_MODEL_CONVERTING);
    if (v != 0)
        return mae_fail(MAE_ERR_STATE, v == MAE_MODEL_CONVERTING
                        ? "another thread is converting this model right now"
                        : "the model has %d live context(s); set the "
                          "precision before creating any", (int)v);
    const mae_kernels *view;
    mae_status s = mae_model_bf16_table(m->k, &view);
    if (s == MAE_OK)
        s = mae_model_pack_bf16(m, view);
    mae_atomic_long_store(&m->live_ctx, 0);
    return s;
}

mae_status mae_precision_change(const char *fn, const char *what, int have, int want, int *todo)
{
    *todo = 0;
    if (want != MAE_PRECISION_F32 && want != MAE_PRECISION_BF16)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: precision %d is neither MAE_PRECISION_F32 (0) nor "
                        "MAE_PRECISION_BF16 (1)", fn, want);
    if (want == have)
        return MAE_OK;
    if (want == MAE_PRECISION_F32)
        return mae_fail(MAE_ERR_UNSUPPORTED, "%s: the %s holds its linear weights only as bf16; load "
                        "the file again for float32", fn, what);
    *todo = 1;
    return MAE_OK;
}
