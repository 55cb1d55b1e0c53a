/* Choosing the precision a model computes in (mae.h, docs/PRECISION.md): the conversion of an
 * inference model's weights to packed bf16, under the same exclusive hold as a trainer's
 * creation (no context may read the weights while they are rewritten). */
#include <stdio.h>
#include "model.h"

MAE_API mae_status mae_model_set_precision(mae_model *m, int precision)
{
    if (!m)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_set_precision: model is NULL");
    if (precision != MAE_PRECISION_F32 && precision != MAE_PRECISION_BF16)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_set_precision: precision %d is neither "
                        "MAE_PRECISION_F32 (0) nor MAE_PRECISION_BF16 (1)", precision);
    if (precision == m->precision)
        return MAE_OK;
    if (precision == MAE_PRECISION_F32)
        return mae_fail(MAE_ERR_UNSUPPORTED, "mae_model_set_precision: the model holds its weights "
                        "only as bf16; load the file again for float32");
    if (m->had_masters)
        return mae_fail(MAE_ERR_STATE, "mae_model_set_precision: a trainer was created on this "
                        "model; bf16 is for inference models (create or load one)");
    long v = mae_atomic_long_cas(&m->live_ctx, 0, MAE_MODEL_CONVERTING);
    if (v != 0)
        return mae_fail(MAE_ERR_STATE, v == MAE_MODEL_CONVERTING
                        ? "mae_model_set_precision: another thread is converting this model right now"
                        : "mae_model_set_precision: the model has %d live context(s); set the "
                          "precision before creating any", (int)v);
    const mae_kernels *view = mae_kernels_bf16_view(m->k);
    mae_status s = view ? mae_model_pack_bf16(m, view)
                        : mae_fail(MAE_ERR_UNSUPPORTED, "model: no bf16 kernels for table '%s'", m->k->name);
    mae_atomic_long_store(&m->live_ctx, 0);
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "mae_model_set_precision: %s", msg);
    }
    return MAE_OK;
}

MAE_API mae_status mae_model_get_precision(const mae_model *m, int *precision)
{
    if (!m || !precision)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_get_precision: %s is NULL",
                        !m ? "model" : "precision");
    *precision = m->precision;
    return MAE_OK;
}
