/* mae_model_save_hf: a model as a Hugging Face directory (config.json + model.safetensors with
 * the names transformers 5 writes), made in a temporary directory next to the target and renamed
 * into place, so that the target is never half-written (docs/FORMAT.md, "Writing Hugging Face
 * directories"). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hf_config.h"
#include "names.h"

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
    return mae_fail(MAE_ERR_IO, "%s '%s': %s", what, path, strerror(errno));
}

static void sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);   /* best effort: some file systems refuse it; the data is safe either way */
        close(fd);
    }
}

static mae_status write_text(const char *path, const char *text, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0)
        return io_fail("cannot create", path);
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    int ok = done == n && fsync(fd) == 0;
    mae_status s = ok ? MAE_OK : io_fail("cannot write", path);
    if (close(fd) != 0 && s == MAE_OK)
        s = io_fail("cannot close", path);
    return s;
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

/* Removes dir's files (those of ours(), or all of them) and then dir. 0 if something stayed. */
static int remove_dir(const char *dir, int only_ours, char *bad, size_t cap)
{
    DIR *d = opendir(dir);
    int ok = 1;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[PATH_CAP + 320];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (only_ours && !ours(e->d_name)) {
            snprintf(bad, cap, "%s", e->d_name);
            ok = 0;
            continue;
        }
        int len = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (len < 0 || len >= (int)sizeof path || unlink(path) != 0)
            ok = 0;
    }
    closedir(d);
    return ok && rmdir(dir) == 0;
}

/* Whether an existing dir may be replaced: a directory holding only our files. */
static mae_status replaceable(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return io_fail("cannot read the existing directory", dir);
    struct dirent *e;
    mae_status s = MAE_OK;
    while (s == MAE_OK && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && !ours(e->d_name))
            s = mae_fail(MAE_ERR_IO, "'%s' exists and holds '%s', which a Hugging Face save would lose: save into a new "
                         "directory", dir, e->d_name);
    closedir(d);
    return s;
}

static mae_status save_into(const mae_model *m, const char *dir, const char *tmp, const char *old, const char *parent)
{
    char path[PATH_CAP + 128], *text = NULL;   /* tmp is at most PATH_CAP + 64 */
    size_t n;
    mae_status s = mae_hf_config_write(&m->cfg, &text, &n);
    if (s == MAE_OK && mkdir(tmp, 0777) != 0) {
        mae_free(text);
        return io_fail("cannot create the temporary directory", tmp);
    }
    if (s == MAE_OK) {
        snprintf(path, sizeof path, "%s/config.json", tmp);
        s = write_text(path, text, n);
    }
    mae_free(text);
    if (s == MAE_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", tmp);
        s = write_weights(m, path);
    }
    if (s == MAE_OK)
        sync_dir(tmp);
    struct stat st;
    int had = s == MAE_OK && lstat(dir, &st) == 0;
    if (had && !S_ISDIR(st.st_mode))
        s = mae_fail(MAE_ERR_IO, "'%s' exists and is not a directory", dir);
    if (had && s == MAE_OK)
        s = replaceable(dir);
    if (had && s == MAE_OK && rename(dir, old) != 0)
        s = io_fail("cannot move the existing directory aside to", old);
    if (s == MAE_OK && rename(tmp, dir) != 0) {
        s = io_fail("cannot rename the new directory to", dir);
        if (had)
            (void)rename(old, dir);   /* put the old one back */
    }
    if (s != MAE_OK) {
        char bad[256];
        remove_dir(tmp, 0, bad, sizeof bad);
        return s;
    }
    sync_dir(parent);
    if (had) {
        char bad[256] = "";
        remove_dir(old, 1, bad, sizeof bad);   /* the new model is in place: a leftover is only litter */
        sync_dir(parent);
    }
    return MAE_OK;
}

MAE_API mae_status mae_model_save_hf(const mae_model *m, const char *dir)
{
    if (!m || !dir)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_save_hf: %s is NULL", !m ? "model" : "dir");
    char path[PATH_CAP], tmp[PATH_CAP + 64], old[PATH_CAP + 64], parent[PATH_CAP];
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')   /* "out/" is "out" */
        len--;
    if (len == 0 || len >= PATH_CAP)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_save_hf: dir is empty or longer than %d bytes", PATH_CAP - 1);
    memcpy(path, dir, len);
    path[len] = '\0';
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else
        snprintf(parent, sizeof parent, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    static atomic_int counter;   /* several saves in one process get distinct names (mkdir decides) */
    int k = atomic_fetch_add(&counter, 1);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%d", path, (long)getpid(), k);
    snprintf(old, sizeof old, "%s.old.%ld.%d", path, (long)getpid(), k);
    mae_status s = save_into(m, path, tmp, old, parent);
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "mae_model_save_hf: %s", msg);
    }
    return MAE_OK;
}
