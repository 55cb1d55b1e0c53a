/* mae_model_save_hf: a model as a Hugging Face directory (config.json + model.safetensors with
 * the names transformers 5 writes), made in a temporary directory next to the target and renamed
 * into place, so that the target is never half-written (docs/FORMAT.md, "Writing Hugging Face
 * directories"). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "checkpoint.h"
#include "names.h"
#include "../os/os.h"
#include "../util/atomic_file.h"

#define PATH_CAP 4096
enum { NAME_CAP = 160 };

/* ---- the tensors ---------------------------------------------------------------------------- */

/* Output i is part part[i] (of parts[i]) of model tensor tensor[i]: a fused qkv is written as its
 * query, key and value rows. */
typedef struct hf_out {
    const mae_model *m;
    int *tensor, *part, *parts;
    float *tmp;     /* one whole tensor, for the split ones */
} hf_out;

static void fetch(const void *arg, int i, float *dst)
{
    const hf_out *o = arg;
    const mae_tensor *t = &o->m->tensors[o->tensor[i]];
    if (o->parts[i] == 1) {
        mae_model_tensor_fetch(o->m, o->tensor[i], dst);
        return;
    }
    size_t n = t->count / (size_t)o->parts[i];
    mae_model_tensor_fetch(o->m, o->tensor[i], o->tmp);
    memcpy(dst, o->tmp + (size_t)o->part[i] * n, n * sizeof *dst);
}

static mae_status write_weights(const mae_model *m, const char *path)
{
    mae_names nm;
    mae_names_hf_v5(&nm, m->cfg.has_decoder);   /* ViTMAEModel's names have no "vit." */
    int cap = 3 * m->n_tensors, n = 0;
    size_t biggest = 1;
    for (int i = 0; i < m->n_tensors; i++)
        biggest = m->tensors[i].count > biggest ? m->tensors[i].count : biggest;
    mae_st_out *out = mae_calloc((size_t)cap, sizeof *out);
    int64_t *shapes = mae_calloc((size_t)cap, 4 * sizeof *shapes);
    char *names = mae_calloc((size_t)cap, NAME_CAP);
    int *idx = mae_calloc((size_t)cap * 3, sizeof *idx);
    hf_out o = { m, idx, idx + cap, idx + 2 * cap, mae_alloc(biggest * sizeof(float)) };
    mae_status s = MAE_OK;
    if (!out || !shapes || !names || !idx || !o.tmp)
        s = mae_fail(MAE_ERR_NOMEM, "out of memory");
    for (int i = 0; s == MAE_OK && i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i];
        int parts = mae_names_map(&nm, t->name, 0, names + (size_t)n * NAME_CAP, NAME_CAP);
        for (int p = 0; p < parts; p++, n++) {
            char *name = names + (size_t)n * NAME_CAP;
            int64_t *shape = shapes + (size_t)n * 4;
            mae_names_map(&nm, t->name, p, name, NAME_CAP);
            memcpy(shape, t->shape, 4 * sizeof *shape);
            shape[0] /= parts;
            out[n] = (mae_st_out){ name, NULL, t->ndim, shape };
            o.tensor[n] = i;
            o.part[n] = p;
            o.parts[n] = parts;
        }
    }
    mae_st_meta meta = { "format", "pt" };   /* what transformers writes, and nothing else */
    if (s == MAE_OK)
        s = mae_st_write_as(path, out, n, &meta, 1, MAE_DT_F32, fetch, &o);
    mae_free(out);
    mae_free(shapes);
    mae_free(names);
    mae_free(idx);
    mae_free(o.tmp);
    return s;
}

/* ---- files and directories ------------------------------------------------------------------ */

static mae_status io_fail(const char *what, const char *path)
{
    char err[128];
    return mae_fail(MAE_ERR_IO, "%s '%s': %s", what, path, mae_os_strerror(errno, err, sizeof err));
}

typedef struct text_arg {
    const char *text;
    size_t n;
} text_arg;

static mae_status put_text(FILE *f, void *arg)
{
    const text_arg *t = arg;
    return fwrite(t->text, 1, t->n, f) == t->n ? MAE_OK : MAE_ERR_IO;
}

/* The files a Hugging Face model directory holds that a save replaces; a directory with anything
 * else in it is not overwritten (the other files would be lost). */
static int ours(const char *name)
{
    size_t n = strlen(name);
    return strcmp(name, "config.json") == 0 || strcmp(name, "model.safetensors") == 0 ||
           strcmp(name, "model.safetensors.index.json") == 0 ||
           (strncmp(name, "model-", 6) == 0 && n > 12 && strcmp(name + n - 12, ".safetensors") == 0);
}

/* A walk over a directory's entries (mae_os_dir_each): remove removes them (those of ours(), or
 * all), else the walk stops at the first name that is not ours. */
typedef struct walk {
    const char *dir;
    int remove, only_ours;
    int left;                  /* an entry stayed */
    char foreign[256];         /* the first name not ours */
} walk;

static int visit(const char *name, void *arg)
{
    walk *w = arg;
    if (w->only_ours && !ours(name)) {
        if (!w->foreign[0])
            snprintf(w->foreign, sizeof w->foreign, "%s", name);
        w->left = 1;
        return !w->remove;
    }
    if (w->remove) {
        char path[PATH_CAP + 320];
        int len = snprintf(path, sizeof path, "%s/%s", w->dir, name);
        if (len < 0 || len >= (int)sizeof path || mae_os_remove(path) != 0)
            w->left = 1;
    }
    return 0;
}

/* Removes dir's files (those of ours(), or all of them) and then dir. 0 if something stayed. */
static int remove_dir(const char *dir, int only_ours)
{
    walk w = { dir, 1, only_ours, 0, "" };
    return mae_os_dir_each(dir, visit, &w) == 0 && !w.left && mae_os_rmdir(dir) == 0;
}

/* Whether an existing dir may be replaced: a directory holding only our files. */
static mae_status replaceable(const char *dir)
{
    walk w = { dir, 0, 1, 0, "" };
    if (mae_os_dir_each(dir, visit, &w) != 0)   /* what was not seen may be foreign */
        return io_fail("cannot read the existing directory", dir);
    if (w.left)
        return mae_fail(MAE_ERR_IO, "'%s' exists and holds '%s', which a Hugging Face save would lose: save into a new "
                        "directory", dir, w.foreign);
    return MAE_OK;
}

static mae_status save_into(const mae_model *m, const char *dir, const char *tmp, const char *old)
{
    char path[PATH_CAP + 128], *text = NULL;   /* tmp is at most PATH_CAP + 64 */
    size_t n;
    mae_status s = mae_hf_config_write(&m->cfg, &text, &n);
    if (s == MAE_OK && mae_os_mkdir(tmp) != 0) {
        mae_free(text);
        return io_fail("cannot create the temporary directory", tmp);
    }
    /* both files go through the atomic writer, which flushes each and then the directory tmp */
    if (s == MAE_OK) {
        snprintf(path, sizeof path, "%s/config.json", tmp);
        text_arg t = { text, n };
        s = mae_atomic_write(NULL, path, put_text, &t);
    }
    mae_free(text);
    if (s == MAE_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", tmp);
        s = write_weights(m, path);
    }
    /* the path itself, not a link's target: a link to a directory is refused, not emptied */
    int kind = s == MAE_OK ? mae_os_path_kind(dir, 0) : MAE_OS_NONE, had = kind != MAE_OS_NONE;
    if (had && kind != MAE_OS_DIR)
        s = mae_fail(MAE_ERR_IO, "'%s' exists and is not a directory", dir);
    if (had && s == MAE_OK)
        s = replaceable(dir);
    if (had && s == MAE_OK && mae_os_rename(dir, old) != 0)
        s = io_fail("cannot move the existing directory aside to", old);
    if (s == MAE_OK && mae_os_rename(tmp, dir) != 0) {
        s = io_fail("cannot rename the new directory to", dir);
        if (had)
            (void)mae_os_rename(old, dir);   /* put the old one back */
    }
    if (s != MAE_OK) {
        remove_dir(tmp, 0);
        return s;
    }
    mae_os_sync_dir(dir);   /* the directory that holds dir: the renames */
    if (had) {
        remove_dir(old, 1);   /* the new model is in place: a leftover is only litter */
        mae_os_sync_dir(old);
    }
    return MAE_OK;
}

mae_status mae_model_write_hf(const mae_model *m, const char *dir)
{
    char path[PATH_CAP], tmp[PATH_CAP + 64], old[PATH_CAP + 64];
    size_t len = strlen(dir);
    while (len > 1 && mae_os_is_sep(dir[len - 1]))   /* "out/" is "out" */
        len--;
    if (len == 0 || len >= PATH_CAP)
        return mae_fail(MAE_ERR_INVALID_ARG, "dir is empty or longer than %d bytes", PATH_CAP - 1);
    memcpy(path, dir, len);
    path[len] = '\0';
    static mae_atomic_long counter;   /* several saves in one process get distinct names (mkdir decides) */
    long k = mae_atomic_long_add(&counter, 1);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, mae_os_getpid(), k);
    snprintf(old, sizeof old, "%s.old.%ld.%ld", path, mae_os_getpid(), k);
    return save_into(m, path, tmp, old);
}
