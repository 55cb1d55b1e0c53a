/* Public entry points for configs and models (mae.h section 2): argument checks, then the model
 * code (src/model) or the model files (src/io/checkpoint.c, hf_save.c); an inner error gets the
 * public function's name once (mae_fail_wrap). */
#include <string.h>
#include "../model/model.h"
#include "../io/checkpoint.h"
#include "../util/sized.h"

/* The size of mae_config's first version (through layer_norm_eps), and its layout: a caller built
 * against that header passes exactly these bytes, so they may never move. */
#define CONFIG_V1_SIZE (offsetof(mae_config, layer_norm_eps) + sizeof(float))
_Static_assert(CONFIG_V1_SIZE == 14 * 4, "mae_config version 1 is 14 four-byte fields");
_Static_assert(offsetof(mae_config, img_height) == CONFIG_V1_SIZE && offsetof(mae_config, img_width) == CONFIG_V1_SIZE + 4,
               "mae_config: fields appended in 1.0 follow version 1");

MAE_API mae_status mae_config_init(mae_config *cfg, size_t struct_size, const char *preset)
{
    if (!cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_config_init: cfg is NULL");
    if (struct_size < CONFIG_V1_SIZE)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_config_init: struct_size %zu is smaller than version 1 of mae_config", struct_size);
    mae_cfg c;
    if (!mae_cfg_preset(&c, preset ? preset : "base"))
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_config_init: unknown preset '%s' (base, large, huge, tiny)", preset);
    mae_config full;
    mae_cfg_to_public(&full, &c, sizeof full);
    return mae_sized_write("mae_config_init", cfg, struct_size, &full, sizeof full, CONFIG_V1_SIZE);
}

/* Reads a caller's config of any size: fields it lacks keep the base preset's values. */
static mae_status read_config(const mae_config *cfg, mae_config *full)
{
    mae_config_init(full, sizeof *full, "base");
    return mae_sized_read("mae_model_create", cfg, full, sizeof *full, CONFIG_V1_SIZE);
}

MAE_API mae_status mae_model_create(const mae_config *cfg, uint64_t seed, mae_model **out)
{
    if (!cfg || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_create: %s is NULL", !cfg ? "cfg" : "out");
    mae_config full;
    mae_status s = read_config(cfg, &full);
    if (s != MAE_OK)
        return s;
    mae_cfg c;
    mae_cfg_from_public(&c, &full);
    s = mae_model_new(&c, seed, out);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_model_create");
}

MAE_API void mae_model_free(mae_model *m)
{
    mae_model_destroy(m);
}

/* ---- files ---------------------------------------------------------------------------------- */

MAE_API mae_status mae_model_load(const char *path, mae_model **out)
{
    if (!path || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_load: %s is NULL", !path ? "path" : "out");
    mae_status s = mae_model_load_file(path, out);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_model_load");
}

MAE_API mae_status mae_model_save(const mae_model *m, const char *path)
{
    if (!m || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_save: %s is NULL", !m ? "model" : "path");
    /* a bf16 model holds bf16 weights: BF16 stores them exactly in half the file */
    mae_status s = mae_model_write(m, path, m->precision == MAE_PRECISION_BF16 ? MAE_DT_BF16 : MAE_DT_F32);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_model_save");
}

MAE_API mae_status mae_model_save_as(const mae_model *m, const char *path, const char *dtype)
{
    if (!m || !path || !dtype)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_save_as: %s is NULL", !m ? "model" : !path ? "path" : "dtype");
    int dt = mae_st_save_dtype(dtype);
    if (dt < 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_save_as: dtype '%.32s' is not F32, F16 or BF16", dtype);
    mae_status s = mae_model_write(m, path, dt);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_model_save_as");
}

MAE_API mae_status mae_model_save_hf(const mae_model *m, const char *dir)
{
    if (!m || !dir)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_save_hf: %s is NULL", !m ? "model" : "dir");
    mae_status s = mae_model_write_hf(m, dir);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_model_save_hf");
}

/* ---- resize, precision ---------------------------------------------------------------------- */

MAE_API mae_status mae_model_resize(const mae_model *m, int height, int width, mae_model **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_resize: %s is NULL", !m ? "model" : "out");
    if (height <= 0 || width <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_resize: size %dx%d must be positive", height, width);
    mae_status s = mae_model_resized(m, height, width, out);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_model_resize");
}

MAE_API mae_status mae_model_set_precision(mae_model *m, int precision)
{
    if (!m)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_set_precision: model is NULL");
    int todo;
    mae_status r = mae_precision_change("mae_model_set_precision", "model", m->precision, precision, &todo);
    if (r != MAE_OK || !todo)
        return r;
    mae_status s = mae_model_to_bf16(m);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_model_set_precision");
}

MAE_API mae_status mae_model_get_precision(const mae_model *m, int *precision)
{
    if (!m || !precision)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_get_precision: %s is NULL",
                        !m ? "model" : "precision");
    *precision = m->precision;
    return MAE_OK;
}

MAE_API mae_status mae_model_load_memory(const void *buf, size_t size, mae_model **out)
{
    if (!out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_load_memory: out is NULL");
    mae_st_file f;
    mae_status s = mae_st_parse(buf, size, &f);   /* the checksum too, before any weight is read */
    if (s != MAE_OK)
        return s;
    s = mae_model_from_st(&f, out);
    mae_st_close(&f);
    return s;
}

/* ---- loading with options ------------------------------------------------------------------ */

/* mae_load_options' first version: through progress_user. */
#define LOAD_OPTIONS_V1_SIZE (offsetof(mae_load_options, progress_user) + sizeof(void *))

MAE_API mae_status mae_load_options_init(mae_load_options *opts, size_t struct_size)
{
    if (!opts)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_load_options_init: opts is NULL");
    mae_load_options full = { sizeof full, MAE_PRECISION_F32, NULL, NULL };
    return mae_sized_write("mae_load_options_init", opts, struct_size, &full, sizeof full, LOAD_OPTIONS_V1_SIZE);
}

/* The caller's options (NULL: the defaults) as the loader's, checked. */
static mae_status read_load_options(const char *fn, const mae_load_options *opts, mae_load_how *how)
{
    mae_load_options full = { sizeof full, MAE_PRECISION_F32, NULL, NULL };
    if (opts) {
        mae_status s = mae_sized_read(fn, opts, &full, sizeof full, LOAD_OPTIONS_V1_SIZE);
        if (s != MAE_OK)
            return s;
    }
    if (full.precision != MAE_PRECISION_F32 && full.precision != MAE_PRECISION_BF16)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: precision %d is neither MAE_PRECISION_F32 (0) nor "
                        "MAE_PRECISION_BF16 (1)", fn, (int)full.precision);
    how->precision = full.precision;
    how->progress = full.progress;
    how->user = full.progress_user;
    return MAE_OK;
}

MAE_API mae_status mae_model_load_with(const char *path, const mae_load_options *opts, mae_model **out)
{
    if (!path || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_load_with: %s is NULL", !path ? "path" : "out");
    mae_load_how how;
    mae_status s = read_load_options("mae_model_load_with", opts, &how);
    if (s == MAE_OK)
        s = mae_model_load_file_how(path, &how, out);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_model_load_with");
}

MAE_API mae_status mae_model_load_memory_with(const void *buf, size_t size, const mae_load_options *opts,
                                              mae_model **out)
{
    if (!out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_load_memory_with: out is NULL");
    mae_load_how how;
    mae_st_file f;
    mae_status s = read_load_options("mae_model_load_memory_with", opts, &how);
    if (s == MAE_OK && (s = mae_st_parse(buf, size, &f)) == MAE_OK) {   /* the checksum too, before any weight */
        s = mae_model_from_st_how(&f, NULL, &how, out);
        mae_st_close(&f);
    }
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_model_load_memory_with");
}

MAE_API mae_status mae_model_get_config(const mae_model *m, mae_config *cfg)
{
    if (!m || !cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_get_config: %s is NULL", !m ? "model" : "cfg");
    /* Any size that holds a field is served, not only whole first versions. */
    mae_config full;
    mae_cfg_to_public(&full, &m->cfg, sizeof full);
    return mae_sized_write("mae_model_get_config (set cfg->struct_size first)", cfg, cfg->struct_size, &full,
                           sizeof full, sizeof(uint32_t) + sizeof(int32_t));
}

MAE_API mae_status mae_model_has_decoder(const mae_model *m, int *has_decoder)
{
    if (!m || !has_decoder)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_has_decoder: %s is NULL", !m ? "model" : "has_decoder");
    *has_decoder = m->cfg.has_decoder;
    return MAE_OK;
}

MAE_API mae_status mae_model_num_params(const mae_model *m, size_t *count)
{
    if (!m || !count)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_num_params: %s is NULL", !m ? "model" : "count");
    /* the tensors' own sizes: a bf16 model's storage (lay.total) is smaller */
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++)
        n += m->tensors[i].count;
    *count = n;
    return MAE_OK;
}

MAE_API mae_status mae_model_tensor(const mae_model *m, const char *name, const float **data,
                                    size_t *count, int *ndim, int64_t shape[4])
{
    if (!m || !name)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_tensor: %s is NULL", !m ? "model" : "name");
    const mae_tensor *t = mae_model_find(m, name);
    if (!t)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_tensor: no tensor named '%s'", name);
    const float *view = NULL;
    mae_status s = data ? mae_model_tensor_view(m, t, &view) : MAE_OK;   /* slim: unpacked once */
    if (s != MAE_OK)
        return s;
    if (data)
        *data = view;
    if (count)
        *count = t->count;
    if (ndim)
        *ndim = t->ndim;
    if (shape)
        for (int i = 0; i < 4; i++)
            shape[i] = t->shape[i];
    return MAE_OK;
}

MAE_API mae_status mae_model_tensor_count(const mae_model *m, int *count)
{
    if (!m || !count)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_tensor_count: %s is NULL", !m ? "model" : "count");
    *count = m->n_tensors;
    return MAE_OK;
}

MAE_API mae_status mae_model_tensor_name(const mae_model *m, int index, const char **name)
{
    if (!m || !name)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_tensor_name: %s is NULL", !m ? "model" : "name");
    if (index < 0 || index >= m->n_tensors)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_tensor_name: index %d is outside [0, %d)", index, m->n_tensors);
    *name = m->tensors[index].name;
    return MAE_OK;
}

MAE_API mae_status mae_model_patch_embed(const mae_model *m, const mae_patch_embed **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_patch_embed: %s is NULL", !m ? "model" : "out");
    *out = &m->part_pe;
    return MAE_OK;
}

MAE_API mae_status mae_model_masker(const mae_model *m, const mae_masker **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_masker: %s is NULL", !m ? "model" : "out");
    *out = &m->part_mk;
    return MAE_OK;
}

MAE_API mae_status mae_model_encoder(const mae_model *m, const mae_encoder **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_encoder: %s is NULL", !m ? "model" : "out");
    *out = &m->part_enc;
    return MAE_OK;
}

MAE_API mae_status mae_model_decoder(const mae_model *m, const mae_decoder **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_decoder: %s is NULL", !m ? "model" : "out");
    if (!m->cfg.has_decoder)
        return mae_fail(MAE_ERR_UNSUPPORTED, "mae_model_decoder: this checkpoint holds only the encoder; reconstruction needs a model with a decoder");
    *out = &m->part_dec;
    return MAE_OK;
}

MAE_API mae_status mae_model_loss(const mae_model *m, const mae_loss **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_loss: %s is NULL", !m ? "model" : "out");
    *out = &m->part_loss;
    return MAE_OK;
}

MAE_API mae_status mae_patchify(const mae_model *m, const float *imgs, int batch, float *patches)
{
    if (!m || !imgs || !patches)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_patchify: a pointer argument is NULL");
    if (batch <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_patchify: batch %d must be positive", batch);
    mae_patchify_run(&m->cfg, imgs, batch, patches);
    return MAE_OK;
}

MAE_API mae_status mae_unpatchify(const mae_model *m, const float *patches, int batch, float *imgs)
{
    if (!m || !imgs || !patches)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_unpatchify: a pointer argument is NULL");
    if (batch <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_unpatchify: batch %d must be positive", batch);
    mae_unpatchify_run(&m->cfg, patches, batch, imgs);
    return MAE_OK;
}
