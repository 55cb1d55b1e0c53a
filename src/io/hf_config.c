/* Hugging Face ViTMAE config.json <-> libmae's config (hf_config.h). The file is hostile input
 * like a safetensors header: its size is bounded, its nesting too (mae_json_skip), every value is
 * type- and range-checked before it is used, and nothing is guessed: a key that changes the
 * computation in a way libmae cannot follow is an error, never ignored. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "hf_config.h"
#include "json.h"
#include "decimal.h"
#include "../os/os.h"

enum { K_INT, K_FLOAT, K_BOOL, K_SIZE, K_INTERMEDIATE, K_ACT, K_ZERO };

/* config.json key -> libmae field (-1: handled by its kind). Keys not listed (initializer_range,
 * dtype, architectures, id2label, ...) do not change the computation and are skipped. */
static const struct { const char *key; int field, kind; } hf_keys[] = {
    { "image_size", MAE_CFI_img, K_SIZE },
    { "patch_size", MAE_CFI_p, K_SIZE },
    { "num_channels", MAE_CFI_C, K_INT },
    { "hidden_size", MAE_CFI_D, K_INT },
    { "num_hidden_layers", MAE_CFI_depth, K_INT },
    { "num_attention_heads", MAE_CFI_H, K_INT },
    { "intermediate_size", -1, K_INTERMEDIATE },
    { "decoder_hidden_size", MAE_CFI_Dd, K_INT },
    { "decoder_num_hidden_layers", MAE_CFI_ddepth, K_INT },
    { "decoder_num_attention_heads", MAE_CFI_dH, K_INT },
    { "decoder_intermediate_size", MAE_CFI_dmlp, K_INT },
    { "layer_norm_eps", MAE_CFI_eps, K_FLOAT },
    { "mask_ratio", MAE_CFI_mask_ratio, K_FLOAT },
    { "norm_pix_loss", MAE_CFI_norm_pix, K_BOOL },
    { "qkv_bias", MAE_CFI_qkv_bias, K_BOOL },
    { "hidden_act", -1, K_ACT },
    { "hidden_dropout_prob", -1, K_ZERO },
    { "attention_probs_dropout_prob", -1, K_ZERO },
};
enum { N_KEYS = sizeof hf_keys / sizeof hf_keys[0] };

static mae_status with_prefix(mae_status s)
{
    char msg[400];
    snprintf(msg, sizeof msg, "%s", mae_last_error());
    return mae_fail(s, "config.json: %s", msg);
}

/* A positive integer (JSON may spell it 64, 64.0 or 6.4e1) no larger than MAE_CFG_LIMIT. */
static mae_status read_int(mae_json *j, const char *key, int *v)
{
    double d;
    if (mae_json_peek(j) != '-' && (mae_json_peek(j) < '0' || mae_json_peek(j) > '9'))
        return mae_fail(MAE_ERR_FORMAT, "config.json: '%s' at byte %zu is not a number", key, mae_json_where(j));
    mae_status s = mae_json_number(j, &d);
    if (s != MAE_OK)
        return with_prefix(s);
    if (!(d >= 1 && d <= MAE_CFG_LIMIT) || d != floor(d))
        return mae_fail(MAE_ERR_FORMAT, "config.json: %s = %.17g is not an integer in [1, %d]", key, d, MAE_CFG_LIMIT);
    *v = (int)d;
    return MAE_OK;
}

static mae_status read_number(mae_json *j, const char *key, double *v)
{
    int c = mae_json_peek(j);
    if (c != '-' && (c < '0' || c > '9'))
        return mae_fail(MAE_ERR_FORMAT, "config.json: '%s' at byte %zu is not a number", key, mae_json_where(j));
    mae_status s = mae_json_number(j, v);
    return s == MAE_OK ? MAE_OK : with_prefix(s);
}

/* image_size / patch_size: an integer, or [height, width] (square only: libmae's image_size and
 * patch_size are one side each). */
static mae_status read_size(mae_json *j, const char *key, int *v)
{
    if (mae_json_peek(j) != '[')
        return read_int(j, key, v);
    int side[2], more = 1, n = 0;
    mae_status s = mae_json_open(j, '[');
    for (int i = 0; s == MAE_OK; i++) {
        if ((s = mae_json_next(j, ']', i, &more)) != MAE_OK || !more)
            break;
        if (i >= 2)
            return mae_fail(MAE_ERR_FORMAT, "config.json: %s has more than two entries", key);
        s = read_int(j, key, &side[n++]);
    }
    if (s != MAE_OK)
        return s == MAE_ERR_FORMAT && strncmp(mae_last_error(), "config.json", 11) ? with_prefix(s) : s;
    if (n != 2)
        return mae_fail(MAE_ERR_FORMAT, "config.json: %s is a list of %d, not [height, width]", key, n);
    if (side[0] != side[1])
        return mae_fail(MAE_ERR_UNSUPPORTED, "config.json: %s = [%d, %d]: libmae reads square sizes only", key, side[0], side[1]);
    *v = side[0];
    return MAE_OK;
}

static mae_status read_string(mae_json *j, const char *key, char *out, size_t cap)
{
    size_t len;
    if (mae_json_peek(j) != '"')
        return mae_fail(MAE_ERR_FORMAT, "config.json: '%s' at byte %zu is not a string", key, mae_json_where(j));
    mae_status s = mae_json_string(j, out, cap, &len);
    if (s != MAE_OK)
        return with_prefix(s);
    if (len >= cap)   /* longer than any value libmae knows: shown cut, then refused by the caller */
        out[cap - 1] = '\0';
    return MAE_OK;
}

/* One known key's value into out. */
static mae_status read_key(mae_json *j, int k, mae_hf_config *out)
{
    const char *key = hf_keys[k].key;
    const mae_field *fd = hf_keys[k].field >= 0 ? &mae_config_fields[hf_keys[k].field] : NULL;
    double d = 0;
    int iv = 0;
    char str[64];
    mae_status s = MAE_OK;
    switch (hf_keys[k].kind) {
    case K_INT:
    case K_SIZE:
    case K_INTERMEDIATE:
        s = hf_keys[k].kind == K_SIZE ? read_size(j, key, &iv) : read_int(j, key, &iv);
        d = iv;
        break;
    case K_FLOAT:
        s = read_number(j, key, &d);
        if (s == MAE_OK && !mae_field_in_range(fd, d))
            return mae_fail(MAE_ERR_FORMAT, "config.json: %s = %.17g is out of range %c%g, %g%c", key, d,
                            fd->flags & MAE_CF_OPEN_LO ? '(' : '[', fd->lo, fd->hi, fd->flags & MAE_CF_OPEN_HI ? ')' : ']');
        break;
    case K_BOOL:
        if ((s = mae_json_bool(j, &iv)) != MAE_OK)
            return mae_fail(MAE_ERR_FORMAT, "config.json: %s is not true or false", key);
        d = iv;
        break;
    case K_ACT:
        if ((s = read_string(j, key, str, sizeof str)) == MAE_OK && strcmp(str, "gelu") != 0)
            return mae_fail(MAE_ERR_UNSUPPORTED, "config.json: hidden_act = \"%s\" is not supported: libmae computes "
                            "\"gelu\" (exact erf GELU) only", str);
        return s;
    case K_ZERO:
        if ((s = read_number(j, key, &d)) == MAE_OK && d != 0)
            return mae_fail(MAE_ERR_UNSUPPORTED, "config.json: %s = %g is not supported: libmae has no dropout", key, d);
        return s;
    }
    if (s != MAE_OK)
        return s;
    if (hf_keys[k].kind == K_INTERMEDIATE) {
        out->intermediate = iv;
        return MAE_OK;
    }
    mae_field_set(fd, &out->c, d);
    out->have[hf_keys[k].field] = 1;
    out->key[hf_keys[k].field] = key;
    return MAE_OK;
}

/* Walks the top-level object: pass 0 only finds model_type (and checks the syntax of the whole
 * document), pass 1 reads the known keys. */
static mae_status walk(mae_json *j, int pass, char *model_type, size_t cap, mae_hf_config *out)
{
    int seen[N_KEYS] = { 0 }, seen_type = 0, more = 1;
    mae_status s;
    if (mae_json_peek(j) != '{')
        return mae_fail(MAE_ERR_FORMAT, "config.json: not a JSON object");
    if ((s = mae_json_open(j, '{')) != MAE_OK)
        return with_prefix(s);
    for (int i = 0;; i++) {
        char key[64];
        size_t len;
        if ((s = mae_json_next(j, '}', i, &more)) != MAE_OK)
            return with_prefix(s);
        if (!more)
            break;
        if ((s = mae_json_string(j, key, sizeof key, &len)) != MAE_OK || (s = mae_json_colon(j)) != MAE_OK)
            return with_prefix(s);
        int k = -1;
        for (int q = 0; len < sizeof key && q < N_KEYS; q++)
            if (strcmp(key, hf_keys[q].key) == 0)
                k = q;
        if (len < sizeof key && strcmp(key, "model_type") == 0) {
            if (seen_type++)
                return mae_fail(MAE_ERR_FORMAT, "config.json: model_type is given twice");
            if (pass == 1)
                s = mae_json_skip(j);
            else
                s = read_string(j, "model_type", model_type, cap);
        } else if (pass == 1 && k >= 0) {
            if (seen[k]++)
                return mae_fail(MAE_ERR_FORMAT, "config.json: %s is given twice", key);
            s = read_key(j, k, out);
        } else {
            s = mae_json_skip(j);
        }
        if (s != MAE_OK)
            return strncmp(mae_last_error(), "config.json", 11) ? with_prefix(s) : s;
    }
    if (mae_json_peek(j) >= 0)
        return mae_fail(MAE_ERR_FORMAT, "config.json: byte %zu: text after the object", mae_json_where(j));
    return MAE_OK;
}

mae_status mae_hf_config_parse(const char *text, size_t n, mae_hf_config *out, int *is_vit_mae)
{
    mae_json j;
    char type[64] = "";
    memset(out, 0, sizeof *out);
    *is_vit_mae = 0;
    if (n > MAE_HF_JSON_MAX)
        return mae_fail(MAE_ERR_FORMAT, "config.json: %zu bytes, more than the %u accepted", n, MAE_HF_JSON_MAX);
    mae_json_init_text(&j, text, n);
    mae_status s = walk(&j, 0, type, sizeof type, out);
    if (s != MAE_OK || strcmp(type, "vit_mae") != 0)
        return s;
    *is_vit_mae = 1;
    mae_cfg_defaults(&out->c);
    mae_json_init_text(&j, text, n);
    return walk(&j, 1, NULL, 0, out);
}

mae_status mae_hf_read_small(const char *path, size_t max, char **text, size_t *n)
{
    *text = NULL;
    *n = 0;
    char err[128];
    FILE *fp = mae_os_fopen(path, "rb");
    if (!fp)
        return mae_fail(MAE_ERR_IO, "'%s': cannot open: %s", path, mae_os_strerror(errno, err, sizeof err));
    uint64_t bytes;
    if (mae_os_file_size(fp, &bytes) != 0) {
        fclose(fp);
        return mae_fail(MAE_ERR_IO, "'%s': not a regular file", path);
    }
    if (bytes > max) {
        fclose(fp);
        return mae_fail(MAE_ERR_FORMAT, "'%s': %llu bytes, more than the %zu accepted", path, (unsigned long long)bytes, max);
    }
    size_t size = (size_t)bytes, got = 0;
    char *buf = mae_alloc(size + 1);
    if (!buf) {
        fclose(fp);
        return mae_fail(MAE_ERR_NOMEM, "'%s': out of memory", path);
    }
    while (got < size) {
        size_t r = fread(buf + got, 1, size - got, fp);
        if (r == 0)
            break;
        got += r;
    }
    int bad = ferror(fp) || got != size || fgetc(fp) != EOF;   /* a file that grew is refused too */
    fclose(fp);
    if (bad) {
        mae_free(buf);
        return mae_fail(MAE_ERR_IO, "'%s': read %zu of %zu bytes", path, got, size);
    }
    buf[size] = '\0';
    *text = buf;
    *n = size;
    return MAE_OK;
}

/* ---- the writer ----------------------------------------------------------------------------- */

/* The shortest decimal that reads back as the same float, so that 1e-12 stays "1e-12". */
static void put_float(char *buf, size_t cap, float v)
{
    for (int digits = 6; digits <= 9; digits++) {
        double back;
        mae_decimal_format(buf, cap, v, digits);
        if (mae_decimal_parse(buf, &back) && (float)back == v)
            return;
    }
}

typedef struct text { char *s; size_t n, cap; int fail; } text;

static void add(text *t, const char *fmt, const char *key, const char *value)
{
    char line[160];
    int len = snprintf(line, sizeof line, fmt, key, value);
    if (len < 0 || (size_t)len >= sizeof line || t->n + (size_t)len + 1 > t->cap) {
        t->fail = 1;
        return;
    }
    memcpy(t->s + t->n, line, (size_t)len + 1);
    t->n += (size_t)len;
}

static void add_int(text *t, const char *key, int v)
{
    char num[32];
    snprintf(num, sizeof num, "%d", v);
    add(t, ",\n  \"%s\": %s", key, num);
}

static void add_float(text *t, const char *key, float v)
{
    char num[40];
    put_float(num, sizeof num, v);
    add(t, ",\n  \"%s\": %s", key, num);
}

mae_status mae_hf_config_write(const mae_cfg *c, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (c->ih != c->iw)
        return mae_fail(MAE_ERR_UNSUPPORTED, "config.json: the model runs at %dx%d; Hugging Face's image_size is one side",
                        c->ih, c->iw);
    text t = { mae_alloc(4096), 0, 4096, 0 };
    if (!t.s)
        return mae_fail(MAE_ERR_NOMEM, "config.json: out of memory");
    t.s[0] = '\0';
    add(&t, "{\n  \"%s\": [\"%s\"]", "architectures", c->has_decoder ? "ViTMAEForPreTraining" : "ViTMAEModel");
    add(&t, ",\n  \"%s\": \"%s\"", "model_type", "vit_mae");
    add_int(&t, "image_size", c->ih);   /* the grid the position table is for */
    add_int(&t, "patch_size", c->p);
    add_int(&t, "num_channels", c->C);
    add_int(&t, "hidden_size", c->D);
    add_int(&t, "num_hidden_layers", c->depth);
    add_int(&t, "num_attention_heads", c->H);
    add_int(&t, "intermediate_size", c->hidden);
    if (c->has_decoder) {
        add_int(&t, "decoder_hidden_size", c->Dd);
        add_int(&t, "decoder_num_hidden_layers", c->ddepth);
        add_int(&t, "decoder_num_attention_heads", c->dH);
        add_int(&t, "decoder_intermediate_size", c->dhidden);
    }
    add(&t, ",\n  \"%s\": \"%s\"", "hidden_act", "gelu");
    add_float(&t, "layer_norm_eps", c->eps);
    add(&t, ",\n  \"%s\": %s", "qkv_bias", c->qkv_bias ? "true" : "false");
    add_float(&t, "mask_ratio", c->mask_ratio);
    add(&t, ",\n  \"%s\": %s", "norm_pix_loss", c->norm_pix ? "true" : "false");
    add(&t, ",\n  \"%s\": %s", "hidden_dropout_prob", "0.0");
    add(&t, ",\n  \"%s\": %s", "attention_probs_dropout_prob", "0.0");
    add(&t, ",\n  \"%s\": %s", "initializer_range", "0.02");
    add(&t, ",\n  \"%s\": \"%s\"", "dtype", "float32");
    add(&t, "%s%s\n}\n", "", "");
    if (t.fail) {   /* cannot happen: the text is a few hundred bytes */
        mae_free(t.s);
        return mae_fail(MAE_ERR_NOMEM, "config.json: the text does not fit");
    }
    *out = t.s;
    *n = t.n;
    return MAE_OK;
}
