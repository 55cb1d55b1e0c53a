/* Placeholder until the safetensors reader lands: loading and saving are not available yet. */
#include "../model/model.h"

MAE_API mae_status mae_model_load(const char *path, mae_model **out)
{
    (void)path; (void)out;
    return mae_fail(MAE_ERR_UNSUPPORTED, "mae_model_load: not implemented yet");
}

MAE_API mae_status mae_model_save(const mae_model *m, const char *path)
{
    (void)m; (void)path;
    return mae_fail(MAE_ERR_UNSUPPORTED, "mae_model_save: not implemented yet");
}
