/* What mae_model_load opens (hf_config.h: mae_hf_open): a safetensors file, a Hugging Face
 * directory, or a sharded checkpoint (model.safetensors.index.json and its shards), with the
 * config.json beside it. Shards are read into one buffer and their entries merged into one
 * mae_st_file, so the loader sees one file whatever the layout on disk. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "hf_config.h"
#include "json.h"

#define INDEX_NAME "model.safetensors.index.json"
#define MAX_SHARDS 4096
#define PATH_CAP 4096

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

static mae_status join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_CAP, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_CAP)
        return mae_fail(MAE_ERR_INVALID_ARG, "'%s': path longer than %d bytes", dir, PATH_CAP - 1);
    return MAE_OK;
}

/* ---- config.json ---------------------------------------------------------------------------- */

/* dir/config.json when it is there: read if it is a vit_mae config, else ignored. */
static mae_status read_config(const char *dir, mae_hf_config *hf, int *have_hf)
{
    char path[PATH_CAP];
    mae_status s = join(path, dir, "config.json");
    *have_hf = 0;
    if (s != MAE_OK || !exists(path))
        return s;
    char *text;
    size_t n;
    if ((s = mae_hf_read_small(path, MAE_HF_JSON_MAX, &text, &n)) != MAE_OK)
        return s;
    s = mae_hf_config_parse(text, n, hf, have_hf);
    mae_free(text);
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "'%s': %s", path, msg);
    }
    return MAE_OK;
}

/* ---- the index ------------------------------------------------------------------------------ */

typedef struct map_entry {
    char name[160];
    int shard;      /* index into shards */
    int found;      /* seen in its shard */
} map_entry;

typedef struct shard_set {
    map_entry *map;             /* sorted by name */
    int n_map;
    char (*shards)[256];        /* distinct shard file names, in order of first mention */
    int n_shards;
} shard_set;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const map_entry *)a)->name, ((const map_entry *)b)->name);
}

/* A shard's name must be a file in the index's directory: no separator, not "." or "..". */
static int plain_name(const char *s, size_t len)
{
    return len > 0 && len < 256 && strlen(s) == len && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

/* weight_map's entries: counted (set->map NULL) or stored. */
static mae_status read_map(mae_json *j, shard_set *set)
{
    int more = 1;
    mae_status s = mae_json_open(j, '{');
    for (int i = 0; s == MAE_OK; i++) {
        char name[160], file[256];
        size_t nlen, flen;
        if ((s = mae_json_next(j, '}', i, &more)) != MAE_OK || !more)
            break;
        if ((s = mae_json_string(j, name, sizeof name, &nlen)) != MAE_OK || (s = mae_json_colon(j)) != MAE_OK)
            break;
        if (mae_json_peek(j) != '"')
            return mae_fail(MAE_ERR_FORMAT, "weight_map: the shard of '%.159s' is not a string", name);
        if ((s = mae_json_string(j, file, sizeof file, &flen)) != MAE_OK)
            break;
        if (nlen >= sizeof name || strlen(name) != nlen)
            return mae_fail(MAE_ERR_FORMAT, "weight_map: tensor name '%.40s...' is longer than 159 bytes or holds a NUL", name);
        if (!plain_name(file, flen))
            return mae_fail(MAE_ERR_FORMAT, "weight_map: the shard '%s' of tensor '%s' is not a file name in the index's "
                            "directory", file, name);
        if (!set->map) {
            if (++set->n_map > 10000000)
                return mae_fail(MAE_ERR_FORMAT, "weight_map: more than 10,000,000 tensors");
            continue;
        }
        map_entry *e = &set->map[set->n_map++];
        memcpy(e->name, name, nlen + 1);
        e->found = 0;
        e->shard = -1;
        for (int k = 0; k < set->n_shards && e->shard < 0; k++)
            if (strcmp(set->shards[k], file) == 0)
                e->shard = k;
        if (e->shard < 0) {
            if (set->n_shards >= MAX_SHARDS)
                return mae_fail(MAE_ERR_FORMAT, "weight_map: more than %d shard files", MAX_SHARDS);
            memcpy(set->shards[set->n_shards], file, flen + 1);
            e->shard = set->n_shards++;
        }
    }
    return s;
}

/* The index: {"metadata": {...}, "weight_map": {name: shard file, ...}}; other keys skipped. */
static mae_status parse_index(const char *text, size_t n, shard_set *set)
{
    mae_json j;
    int more = 1, seen = 0;
    mae_json_init_text(&j, text, n);
    if (mae_json_peek(&j) != '{')
        return mae_fail(MAE_ERR_FORMAT, "not a JSON object");
    mae_status s = mae_json_open(&j, '{');
    for (int i = 0; s == MAE_OK; i++) {
        char key[32];
        size_t len;
        if ((s = mae_json_next(&j, '}', i, &more)) != MAE_OK || !more)
            break;
        if ((s = mae_json_string(&j, key, sizeof key, &len)) != MAE_OK || (s = mae_json_colon(&j)) != MAE_OK)
            break;
        if (len < sizeof key && strcmp(key, "weight_map") == 0) {
            if (seen++)
                return mae_fail(MAE_ERR_FORMAT, "weight_map is given twice");
            if (mae_json_peek(&j) != '{')
                return mae_fail(MAE_ERR_FORMAT, "weight_map is not an object");
            s = read_map(&j, set);
        } else {
            s = mae_json_skip(&j);
        }
    }
    if (s == MAE_OK && mae_json_peek(&j) >= 0)
        return mae_fail(MAE_ERR_FORMAT, "byte %zu: text after the object", mae_json_where(&j));
    if (s == MAE_OK && !seen)
        return mae_fail(MAE_ERR_FORMAT, "no weight_map");
    return s;
}

static mae_status read_index(const char *path, shard_set *set)
{
    char *text;
    size_t n;
    memset(set, 0, sizeof *set);
    mae_status s = mae_hf_read_small(path, MAE_HF_JSON_MAX, &text, &n);
    if (s != MAE_OK)
        return s;
    s = parse_index(text, n, set);   /* count */
    if (s == MAE_OK) {
        int count = set->n_map;
        set->map = mae_calloc((size_t)count + 1, sizeof *set->map);
        set->shards = mae_calloc(MAX_SHARDS, sizeof *set->shards);
        set->n_map = 0;
        s = !set->map || !set->shards ? mae_fail(MAE_ERR_NOMEM, "out of memory for %d tensors", count)
                                      : parse_index(text, n, set);
    }
    mae_free(text);
    if (s == MAE_OK && set->n_map == 0)
        s = mae_fail(MAE_ERR_FORMAT, "weight_map is empty");
    if (s == MAE_OK) {
        qsort(set->map, (size_t)set->n_map, sizeof *set->map, cmp_entry);
        for (int i = 1; i < set->n_map; i++)
            if (strcmp(set->map[i - 1].name, set->map[i].name) == 0)
                s = mae_fail(MAE_ERR_FORMAT, "weight_map lists tensor '%s' twice", set->map[i].name);
    }
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        s = mae_fail(s, "'%s': %s", path, msg);
    }
    return s;
}

/* ---- the shards ----------------------------------------------------------------------------- */

/* Reads every shard into one buffer (each at a 64-byte boundary) and parses each in place. */
static mae_status read_shards(const char *dir, const shard_set *set, unsigned char **buf_out, mae_st_file *sf)
{
    char path[PATH_CAP];
    size_t *size = mae_calloc((size_t)set->n_shards, sizeof *size), total = 0;
    mae_status s = size ? MAE_OK : mae_fail(MAE_ERR_NOMEM, "out of memory");
    for (int k = 0; s == MAE_OK && k < set->n_shards; k++) {
        struct stat st;
        if ((s = join(path, dir, set->shards[k])) != MAE_OK)
            break;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            s = mae_fail(MAE_ERR_IO, "shard '%s' (in the index's weight_map) %s", path, errno == ENOENT ? "is missing" : "is not a regular file");
        else if ((unsigned long long)st.st_size > SIZE_MAX / 2 || !mae_add_size(total, ((size_t)st.st_size + 63) / 64 * 64, &total))
            s = mae_fail(MAE_ERR_NOMEM, "the shards do not fit in memory");
        else
            size[k] = (size_t)st.st_size;
    }
    unsigned char *buf = s == MAE_OK ? mae_alloc(total + 1) : NULL;
    if (s == MAE_OK && !buf)
        s = mae_fail(MAE_ERR_NOMEM, "cannot allocate %zu bytes for the shards", total);
    size_t at = 0;
    for (int k = 0; s == MAE_OK && k < set->n_shards; k++) {
        join(path, dir, set->shards[k]);
        FILE *fp = fopen(path, "rb");
        size_t got = 0;
        if (!fp) {
            s = mae_fail(MAE_ERR_IO, "shard '%s': cannot open: %s", path, strerror(errno));
            break;
        }
        while (got < size[k]) {
            size_t r = fread(buf + at + got, 1, size[k] - got, fp);
            if (r == 0)
                break;
            got += r;
        }
        fclose(fp);
        if (got != size[k]) {
            s = mae_fail(MAE_ERR_IO, "shard '%s': read %zu of %zu bytes", path, got, size[k]);
            break;
        }
        if ((s = mae_st_parse(buf + at, size[k], &sf[k])) != MAE_OK) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", mae_last_error());
            s = mae_fail(s, "shard '%s': %s", path, msg);
        }
        at += (size[k] + 63) / 64 * 64;
    }
    mae_free(size);
    if (s != MAE_OK) {
        mae_free(buf);
        return s;
    }
    *buf_out = buf;
    return MAE_OK;
}

/* Every tensor of every shard must be in the map, for that shard; every map entry in its shard. */
static mae_status cross_check(shard_set *set, const mae_st_file *sf)
{
    for (int k = 0; k < set->n_shards; k++)
        for (int i = 0; i < sf[k].n; i++) {
            map_entry key, *e;
            memcpy(key.name, sf[k].t[i].name, sizeof key.name);
            e = bsearch(&key, set->map, (size_t)set->n_map, sizeof *set->map, cmp_entry);
            if (!e)
                return mae_fail(MAE_ERR_FORMAT, "tensor '%s' of shard '%s' is not in the weight_map", key.name, set->shards[k]);
            if (e->shard != k)
                return mae_fail(MAE_ERR_FORMAT, "tensor '%s' is in shard '%s', but the weight_map puts it in '%s'", key.name,
                                set->shards[k], set->shards[e->shard]);
            e->found = 1;
        }
    for (int i = 0; i < set->n_map; i++)
        if (!set->map[i].found)
            return mae_fail(MAE_ERR_FORMAT, "tensor '%s' is in the weight_map but not in its shard '%s'", set->map[i].name,
                            set->shards[set->map[i].shard]);
    return MAE_OK;
}

/* One mae_st_file over the shards (mae_st_merge): entries with offsets into the shared buffer,
 * the metadata of every shard (a key two shards give differently is an error). */
static mae_status merge(unsigned char *buf, const mae_st_file *sf, int n_shards, mae_st_file *f)
{
    size_t end = 0;
    for (int k = 0; k < n_shards; k++) {
        size_t e = (size_t)(sf[k].data - buf) + sf[k].data_size;
        end = e > end ? e : end;
    }
    return mae_st_merge(sf, n_shards, buf, end, f);
}

static mae_status open_sharded(const char *index, mae_st_file *f)
{
    char dir[PATH_CAP];
    const char *slash = strrchr(index, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - index) : 1, slash ? index : ".");
    if (slash == index)
        snprintf(dir, sizeof dir, "/");
    shard_set set;
    mae_status s = read_index(index, &set);
    mae_st_file *sf = s == MAE_OK ? mae_calloc((size_t)set.n_shards, sizeof *sf) : NULL;
    unsigned char *buf = NULL;
    if (s == MAE_OK && !sf)
        s = mae_fail(MAE_ERR_NOMEM, "out of memory");
    if (s == MAE_OK)
        s = read_shards(dir, &set, &buf, sf);
    if (s == MAE_OK)
        s = cross_check(&set, sf);
    if (s == MAE_OK)
        s = merge(buf, sf, set.n_shards, f);   /* f owns buf from here, if it succeeds */
    if (s != MAE_OK)
        mae_free(buf);
    for (int k = 0; sf && k < set.n_shards; k++)
        mae_st_close(&sf[k]);   /* the entries were copied; the buffer is f's now (or freed) */
    mae_free(sf);
    mae_free(set.map);
    mae_free(set.shards);
    return s;
}

/* ---- mae_hf_open ---------------------------------------------------------------------------- */

static mae_status open_weights(const char *path, mae_st_file *f)
{
    if (ends_with(path, ".index.json"))
        return open_sharded(path, f);
    return mae_st_open_stream(path, f);   /* read into the model tensor by tensor, verified after */
}

mae_status mae_hf_open(const char *path, mae_st_file *f, mae_hf_config *hf, int *have_hf)
{
    char weights[PATH_CAP], dir[PATH_CAP];
    mae_status s;
    memset(f, 0, sizeof *f);
    *have_hf = 0;
    if (is_dir(path)) {
        if ((s = join(weights, path, "model.safetensors")) != MAE_OK)
            return s;
        if (!exists(weights) && (s = join(weights, path, INDEX_NAME)) != MAE_OK)
            return s;
        if (!exists(weights))
            return mae_fail(MAE_ERR_IO, "'%s': the directory holds neither model.safetensors nor " INDEX_NAME, path);
        snprintf(dir, sizeof dir, "%s", path);
    } else {
        const char *slash = strrchr(path, '/');
        if (strlen(path) >= PATH_CAP)
            return mae_fail(MAE_ERR_INVALID_ARG, "'%.64s...': path longer than %d bytes", path, PATH_CAP - 1);
        snprintf(weights, sizeof weights, "%s", path);
        if (!slash)
            snprintf(dir, sizeof dir, ".");
        else if (slash == path)
            snprintf(dir, sizeof dir, "/");
        else
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    }
    if ((s = read_config(dir, hf, have_hf)) != MAE_OK)
        return s;
    if ((s = open_weights(weights, f)) != MAE_OK && !strstr(mae_last_error(), weights)) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "'%s': %s", weights, msg);
    }
    return s;
}
