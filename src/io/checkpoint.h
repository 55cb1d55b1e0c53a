/* Model files (checkpoint.c: safetensors with official MAE or Hugging Face ViTMAE names;
 * hf_save.c: a Hugging Face directory). What src/api/model_api.c and the other readers of the io
 * layer call. Errors state the problem; the public calls add their name. */
#ifndef MAE_CHECKPOINT_H
#define MAE_CHECKPOINT_H

#include "../model/model.h"
#include "safetensors.h"
#include "hf_config.h"

/* How a model is loaded (the public mae_load_options, checked by src/api/model_api.c). */
typedef struct mae_load_how {
    int precision;              /* MAE_PRECISION_F32, or _BF16: each linear weight rounded and
                                 * packed as bf16 as it is read, never held as float32 whole */
    mae_progress_fn progress;   /* after each tensor; NULL: the thread's load hook
                                 * (mae_model_load_progress), if any */
    void *user;
} mae_load_how;

/* A model from path: a safetensors file, a Hugging Face directory or sharded checkpoint (with
 * its config.json). The message of a failure starts with 'path'. how NULL: float32, the
 * thread's hook. */
mae_status mae_model_load_file(const char *path, mae_model **out);
mae_status mae_model_load_file_how(const char *path, const mae_load_how *how, mae_model **out);
/* mae_model_load on a parsed or opened file (mae_model_load_memory: on a file image in memory);
 * it ends with mae_st_verify. */
mae_status mae_model_from_st(const mae_st_file *f, mae_model **out);
/* The same with config.json's settings (hf may be NULL) and how (may be NULL). */
mae_status mae_model_from_st_hf(const mae_st_file *f, const mae_hf_config *hf, mae_model **out);
mae_status mae_model_from_st_how(const mae_st_file *f, const mae_hf_config *hf, const mae_load_how *how,
                                 mae_model **out);
/* The model config of a file, exactly as mae_model_load finds it: __metadata__, then what the
 * shapes show, then mae_cfg_finish. */
mae_status mae_ckpt_file_config(const mae_st_file *f, mae_cfg *c);
/* Head count for a width when the metadata has none: the presets' (768 -> 12, 1024 and 1280 ->
 * 16; decoder 512 -> 16), else dim / 64 when 64 divides dim, else 0 (the file must say). */
int mae_ckpt_default_heads(int dim, int decoder);

/* Writes m to path (every tensor in state_dict order, stored as dtype: MAE_DT_F32, _F16 or
 * _BF16), atomically. */
mae_status mae_model_write(const mae_model *m, const char *path, int dtype);
/* Writes m as a Hugging Face directory dir (config.json + model.safetensors), replacing one that
 * is there only once the new one is complete (hf_save.c). */
mae_status mae_model_write_hf(const mae_model *m, const char *dir);

#endif
