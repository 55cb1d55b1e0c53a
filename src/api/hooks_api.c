/* Hooks for a host: cancelling a context's, trainer's or finetuner's running call, progress of
 * a training pass and of a load. The callbacks are stored here; they are asked between blocks
 * (forward.c, trainer.c, finetune.c), inside a forward's blocks before each macro-tile (the
 * cancel scope of util.h) and between tensors (checkpoint.c). */
#include "../model/finetune.h"

/* A cleared callback forgets its user pointer too. */
static void set_abort(mae_hooks *h, mae_abort_fn abort, void *user)
{
    h->abort = abort;
    h->abort_user = abort ? user : NULL;
}

static void set_progress(mae_hooks *h, mae_progress_fn progress, void *user)
{
    h->progress = progress;
    h->progress_user = progress ? user : NULL;
}

MAE_API mae_status mae_ctx_set_abort(mae_ctx *c, mae_abort_fn abort, void *user)
{
    if (!c)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_set_abort: context is NULL");
    set_abort(&c->hooks, abort, user);
    return MAE_OK;
}

MAE_API mae_status mae_trainer_set_abort(mae_trainer *t, mae_abort_fn abort, void *user)
{
    if (!t)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_abort: trainer is NULL");
    set_abort(&t->hooks, abort, user);
    return MAE_OK;
}

MAE_API mae_status mae_trainer_set_progress(mae_trainer *t, mae_progress_fn progress, void *user)
{
    if (!t)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_progress: trainer is NULL");
    set_progress(&t->hooks, progress, user);
    return MAE_OK;
}

MAE_API mae_status mae_finetuner_set_abort(mae_finetuner *f, mae_abort_fn abort, void *user)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_set_abort: finetuner is NULL");
    set_abort(&f->tr.hooks, abort, user);
    return MAE_OK;
}

MAE_API mae_status mae_finetuner_set_progress(mae_finetuner *f, mae_progress_fn progress, void *user)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_set_progress: finetuner is NULL");
    set_progress(&f->tr.hooks, progress, user);
    return MAE_OK;
}

/* The load hook is per thread: a load runs on its caller's thread, and loads on other threads
 * (with or without their own hook) must not see it. */
static MAE_THREAD_LOCAL mae_progress_fn load_progress;
static MAE_THREAD_LOCAL void *load_user;

int mae_load_progress_tick(int done, int total)
{
    return load_progress ? load_progress(load_user, done, total) : 0;
}

MAE_API mae_status mae_model_load_progress(const char *path, mae_progress_fn progress, void *user,
                                           mae_model **out)
{
    load_progress = progress;
    load_user = user;
    mae_status s = mae_model_load(path, out);
    load_progress = NULL;
    load_user = NULL;
    return s;
}
