/* The classifier's public entry points (mae.h section 9): argument checks, then the model code
 * (src/model/classifier.c) or the file code (src/io/classifier_io.c); an inner error gets the
 * public function's name once (mae_fail_wrap). */
#include <stdio.h>
#include <string.h>
#include "../model/classifier.h"
#include "../io/classifier_io.h"

MAE_API mae_status mae_classifier_create(const mae_model *m, int num_classes, int global_pool,
                                         uint64_t seed, mae_classifier **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_create: %s is NULL", !m ? "model" : "out");
    if (num_classes < 1 || num_classes > MAE_CLASSIFIER_MAX_CLASSES)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_create: num_classes %d is outside [1, %d]",
                        num_classes, MAE_CLASSIFIER_MAX_CLASSES);
    if (global_pool != 0 && global_pool != 1)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_create: global_pool %d is not 0 or 1", global_pool);
    mae_status s = mae_classifier_new(m, num_classes, global_pool, seed, out);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_classifier_create");
}

MAE_API mae_status mae_classifier_model(const mae_classifier *c, const mae_model **m)
{
    if (!c || !m)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_model: %s is NULL", !c ? "classifier" : "m");
    *m = c->m;
    return MAE_OK;
}

MAE_API mae_status mae_classifier_num_classes(const mae_classifier *c, int *num_classes)
{
    if (!c || !num_classes)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_num_classes: %s is NULL", !c ? "classifier" : "num_classes");
    *num_classes = c->classes;
    return MAE_OK;
}

MAE_API mae_status mae_classifier_global_pool(const mae_classifier *c, int *global_pool)
{
    if (!c || !global_pool)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_global_pool: %s is NULL", !c ? "classifier" : "global_pool");
    *global_pool = c->global_pool;
    return MAE_OK;
}

MAE_API mae_status mae_classifier_label(const mae_classifier *c, int index, const char **label)
{
    if (!c || !label)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_label: %s is NULL", !c ? "classifier" : "label");
    if (index < 0 || index >= c->classes)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_label: index %d is outside [0, %d)", index, c->classes);
    *label = c->labels ? c->labels[index] : c->index_names[index];
    return MAE_OK;
}

MAE_API mae_status mae_classifier_has_labels(const mae_classifier *c, int *has_labels)
{
    if (!c || !has_labels)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_has_labels: %s is NULL", !c ? "classifier" : "has_labels");
    *has_labels = c->labels != NULL;
    return MAE_OK;
}

MAE_API mae_status mae_classifier_set_labels(mae_classifier *c, const char *const *labels)
{
    if (!c)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_set_labels: classifier is NULL");
    mae_status s = mae_classifier_labels_set(c, labels);
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "mae_classifier_set_labels: %s", msg);
    }
    return MAE_OK;
}

MAE_API mae_status mae_classifier_tensor(const mae_classifier *c, const char *name,
                                         const float **data, size_t *count)
{
    if (!c || !name)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_tensor: %s is NULL", !c ? "classifier" : "name");
    size_t D = (size_t)c->m->cfg.D, K = (size_t)c->classes;
    const float *p = NULL;
    size_t n = 0;
    if (strcmp(name, "head.weight") == 0)
        p = c->head_w, n = K * D;
    else if (strcmp(name, "head.bias") == 0)
        p = c->head_b, n = K;
    else if (c->global_pool && strcmp(name, "fc_norm.weight") == 0)
        p = c->fc_norm_w, n = D;
    else if (c->global_pool && strcmp(name, "fc_norm.bias") == 0)
        p = c->fc_norm_b, n = D;
    else if (c->global_pool && strncmp(name, "norm.", 5) == 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_tensor: a global-pool classifier has no '%s' (fc_norm "
                        "replaces it)", name);
    if (p) {
        if (data)
            *data = p;
        if (count)
            *count = n;
        return MAE_OK;
    }
    if (!mae_model_find(c->m, name))
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_tensor: no tensor '%s'", name);
    return mae_model_tensor(c->m, name, data, count, NULL, NULL);
}

/* The checks mae_classifier_forward and mae_classifier_features share. */
static mae_status check_run(const char *fn, const mae_classifier *c, const mae_ctx *ctx, const float *imgs,
                            int batch, const float *out, const char *out_name)
{
    if (!c || !ctx || !imgs || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: %s is NULL", fn,
                        !c ? "classifier" : !ctx ? "context" : !imgs ? "imgs" : out_name);
    if (ctx->m != c->m)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the context was not created for this classifier's model (use "
                        "mae_classifier_model)", fn);
    if (batch <= 0 || batch > ctx->max_batch)
        return mae_fail(MAE_ERR_SHAPE, "%s: batch %d is outside [1, %d] (the context's max_batch)", fn, batch,
                        ctx->max_batch);
    return MAE_OK;
}

MAE_API mae_status mae_classifier_forward(const mae_classifier *c, mae_ctx *ctx, const float *imgs,
                                          int batch, float *logits)
{
    mae_status s = check_run("mae_classifier_forward", c, ctx, imgs, batch, logits, "logits");
    if (s == MAE_OK)
        s = mae_classifier_run(c, ctx, imgs, batch, logits, NULL);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_classifier_forward");
}

MAE_API mae_status mae_classifier_features(const mae_classifier *c, mae_ctx *ctx, const float *imgs,
                                           int batch, float *features)
{
    mae_status s = check_run("mae_classifier_features", c, ctx, imgs, batch, features, "features");
    if (s == MAE_OK)
        s = mae_classifier_run(c, ctx, imgs, batch, NULL, features);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_classifier_features");
}

MAE_API mae_status mae_classifier_set_precision(mae_classifier *c, int precision)
{
    if (!c)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_set_precision: classifier is NULL");
    int todo;
    mae_status r = mae_precision_change("mae_classifier_set_precision", "classifier", c->m->precision,
                                        precision, &todo);
    if (r != MAE_OK || !todo)
        return r;
    /* a finetuner gave the encoder float32 masters (the model's "trainer" in its own words) */
    if (c->m->had_masters)
        return mae_fail(MAE_ERR_STATE, "mae_classifier_set_precision: a finetuner was created on this "
                        "classifier; bf16 is for inference classifiers (to fine-tune in bf16, make the "
                        "classifier from a bf16 model)");
    mae_status s = mae_classifier_to_bf16(c);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_classifier_set_precision");
}

MAE_API mae_status mae_classifier_get_precision(const mae_classifier *c, int *precision)
{
    if (!c || !precision)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_get_precision: %s is NULL",
                        !c ? "classifier" : "precision");
    *precision = c->m->precision;
    return MAE_OK;
}

MAE_API void mae_classifier_free(mae_classifier *c)
{
    mae_classifier_destroy(c);
}

MAE_API mae_status mae_classifier_load(const char *path, int num_classes, mae_classifier **out)
{
    if (!path || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_load: %s is NULL", !path ? "path" : "out");
    if (num_classes < 0 || num_classes > MAE_CLASSIFIER_MAX_CLASSES)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_load: num_classes %d is outside [0, %d]", num_classes,
                        MAE_CLASSIFIER_MAX_CLASSES);
    mae_status s = mae_classifier_load_file(path, num_classes, out);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_classifier_load");
}

MAE_API mae_status mae_classifier_save(const mae_classifier *c, const char *path)
{
    if (!c || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_save: %s is NULL", !c ? "classifier" : "path");
    /* as mae_model_save: an inference bf16 classifier's encoder holds bf16 weights, which BF16
     * stores exactly in half the file; one a finetuner trained holds float32 masters, kept */
    const mae_model *m = c->m;
    int dt = m->precision == MAE_PRECISION_BF16 && !m->had_masters ? MAE_DT_BF16 : MAE_DT_F32;
    mae_status s = mae_classifier_write(c, path, dt, NULL, 0, NULL, 0);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_classifier_save");
}

MAE_API mae_status mae_classifier_save_as(const mae_classifier *c, const char *path, const char *dtype)
{
    if (!c || !path || !dtype)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_save_as: %s is NULL",
                        !c ? "classifier" : !path ? "path" : "dtype");
    int dt = mae_st_save_dtype(dtype);
    if (dt < 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_classifier_save_as: dtype '%.32s' is not F32, F16 or BF16", dtype);
    mae_status s = mae_classifier_write(c, path, dt, NULL, 0, NULL, 0);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_classifier_save_as");
}
