/* Mapping official MAE tensor names onto the names a checkpoint file uses (the table in
 * docs/FORMAT.md, "Tensor names"). */
#include <stdio.h>
#include <string.h>
#include "names.h"
#include "../util/util.h"

#define MAX_INDEX 1000000   /* block indices are capped here when counting */

/* Official prefix -> Hugging Face prefix; the rest of the name follows unchanged. enc: the HF
 * name sits under the encoder prefix ("vit." or nothing). */
static const struct { const char *off, *hf; int enc; } top_names[] = {
    { "cls_token", "embeddings.cls_token", 1 },
    { "pos_embed", "embeddings.position_embeddings", 1 },
    { "patch_embed.proj.", "embeddings.patch_embeddings.projection.", 1 },
    { "norm.", "layernorm.", 1 },
    { "mask_token", "decoder.mask_token", 0 },
    { "decoder_pos_embed", "decoder.decoder_pos_embed", 0 },
    { "decoder_embed.", "decoder.decoder_embed.", 0 },
    { "decoder_norm.", "decoder.decoder_norm.", 0 },
    { "decoder_pred.", "decoder.decoder_pred.", 0 },
};

/* Inside a block: official -> Hugging Face. The fused qkv is split (see block_name). */
static const struct { const char *off, *hf; } block_names[] = {
    { "norm1.", "layernorm_before." },
    { "attn.proj.", "attention.output.dense." },
    { "norm2.", "layernorm_after." },
    { "mlp.fc1.", "intermediate.dense." },
    { "mlp.fc2.", "output.dense." },
};

static const char *const qkv_parts[3] = { "query", "key", "value" };

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Digits followed by '.' at s: the index (capped) and the length through the dot, or 0. */
static size_t block_index(const char *s, int *index)
{
    size_t n = 0;
    long v = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        if (v < MAX_INDEX)
            v = v * 10 + (s[n] - '0');
        n++;
    }
    if (n == 0 || s[n] != '.')
        return 0;
    *index = v < MAX_INDEX ? (int)v : MAX_INDEX;
    return n + 1;
}

static const char *block_prefix(const mae_names *nm, int decoder, char *buf, size_t cap)
{
    if (!nm->hf)
        return decoder ? "decoder_blocks." : "blocks.";
    if (decoder)
        return nm->dec;
    snprintf(buf, cap, "%sencoder.layer.", nm->enc);
    return buf;
}

/* A name inside block `index` (rest = the official name after "blocks.<i>."). */
static int block_name(const mae_names *nm, int decoder, int index, const char *rest, int part, char *out, size_t cap)
{
    char pre[32];
    const char *bp = block_prefix(nm, decoder, pre, sizeof pre);
    int n;
    if (starts_with(rest, "attn.qkv.")) {
        n = snprintf(out, cap, "%s%d.attention.attention.%s.%s", bp, index, qkv_parts[part], rest + strlen("attn.qkv."));
        return n >= 0 && (size_t)n < cap ? 3 : 0;
    }
    for (size_t i = 0; i < sizeof block_names / sizeof block_names[0]; i++)
        if (starts_with(rest, block_names[i].off)) {
            n = snprintf(out, cap, "%s%d.%s%s", bp, index, block_names[i].hf, rest + strlen(block_names[i].off));
            return n >= 0 && (size_t)n < cap ? 1 : 0;
        }
    n = snprintf(out, cap, "%s%d.%s", bp, index, rest);
    return n >= 0 && (size_t)n < cap ? 1 : 0;
}

int mae_names_map(const mae_names *nm, const char *official, int part, char *out, size_t cap)
{
    int n;
    if (part < 0 || part > 2)
        return 0;
    if (!nm->hf) {
        n = snprintf(out, cap, "%s", official);
        return n >= 0 && (size_t)n < cap ? 1 : 0;
    }
    int index;
    size_t len;
    if (starts_with(official, "blocks.") && (len = block_index(official + 7, &index)) > 0)
        return block_name(nm, 0, index, official + 7 + len, part, out, cap);
    if (starts_with(official, "decoder_blocks.") && (len = block_index(official + 15, &index)) > 0)
        return block_name(nm, 1, index, official + 15 + len, part, out, cap);
    for (size_t i = 0; i < sizeof top_names / sizeof top_names[0]; i++) {
        const char *off = top_names[i].off;
        size_t olen = strlen(off);
        if (strncmp(official, off, olen) == 0 && (off[olen - 1] == '.' || official[olen] == '\0')) {
            n = snprintf(out, cap, "%s%s%s", top_names[i].enc ? nm->enc : "", top_names[i].hf, official + olen);
            return n >= 0 && (size_t)n < cap ? 1 : 0;
        }
    }
    n = snprintf(out, cap, "%s", official);
    return n >= 0 && (size_t)n < cap ? 1 : 0;
}

const mae_st_entry *mae_names_find(const mae_names *nm, const char *official, int part)
{
    char name[sizeof(((mae_st_entry *)0)->name)];
    if (!mae_names_map(nm, official, part, name, sizeof name))
        return NULL;
    return mae_st_find(nm->f, name);
}

void mae_names_hf_v5(mae_names *nm, int vit_prefix)
{
    nm->f = NULL;
    nm->hf = 1;
    nm->enc = vit_prefix ? "vit." : "";
    nm->dec = MAE_HF_DEC_V5;
}

/* The naming schemes a tensor name belongs to (a name of none, such as "head.weight" or the
 * optimizer state of a trainer checkpoint, is ignored by the loader). */
enum { S_OFFICIAL = 1, S_VIT = 2, S_BARE = 4, S_DEC_V4 = 8, S_DEC_V5 = 16, S_HF_DEC = 32 };

static int scheme_of(const char *name)
{
    static const char *const official[] = { "cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.", "mask_token",
                                             "decoder_pos_embed", "decoder_embed.", "decoder_blocks.", "decoder_norm.",
                                             "decoder_pred." };
    static const char *const bare[] = { "embeddings.", "encoder.", "layernorm." };
    for (size_t i = 0; i < sizeof official / sizeof official[0]; i++)
        if (starts_with(name, official[i]))
            return S_OFFICIAL;
    if (starts_with(name, "vit."))
        return S_VIT;
    for (size_t i = 0; i < sizeof bare / sizeof bare[0]; i++)
        if (starts_with(name, bare[i]))
            return S_BARE;
    if (starts_with(name, MAE_HF_DEC_V4))
        return S_DEC_V4;
    if (starts_with(name, MAE_HF_DEC_V5))
        return S_DEC_V5;
    return starts_with(name, "decoder.") ? S_HF_DEC : 0;
}

/* MAE_ERR_FORMAT naming one tensor of each of two schemes that a file must not mix. */
static mae_status mixed(const mae_st_file *f, int a, int b, const char *what)
{
    const char *na = "", *nb = "";
    for (int i = 0; i < f->n; i++) {
        int sc = scheme_of(f->t[i].name);
        if (sc & a && !*na)
            na = f->t[i].name;
        if (sc & b && !*nb)
            nb = f->t[i].name;
    }
    return mae_fail(MAE_ERR_FORMAT, "the file mixes %s: '%s' and '%s'", what, na, nb);
}

mae_status mae_names_detect(const mae_st_file *f, mae_names *nm)
{
    int seen = 0;
    for (int i = 0; i < f->n; i++)
        seen |= scheme_of(f->t[i].name);
    if ((seen & S_OFFICIAL) && (seen & ~S_OFFICIAL))
        return mixed(f, S_OFFICIAL, ~S_OFFICIAL, "official MAE and Hugging Face tensor names");
    if ((seen & S_VIT) && (seen & S_BARE))
        return mixed(f, S_VIT, S_BARE, "encoder names with and without the 'vit.' prefix");
    if ((seen & S_DEC_V4) && (seen & S_DEC_V5))
        return mixed(f, S_DEC_V4, S_DEC_V5, "the two Hugging Face decoder layer namings");
    nm->f = f;
    nm->hf = 0;
    nm->enc = "";
    nm->dec = seen & S_DEC_V5 ? MAE_HF_DEC_V5 : MAE_HF_DEC_V4;
    if (mae_st_find(f, "patch_embed.proj.weight"))
        return MAE_OK;
    nm->hf = 1;
    nm->enc = "vit.";
    if (mae_st_find(f, "vit.embeddings.patch_embeddings.projection.weight"))
        return MAE_OK;
    nm->enc = "";
    if (mae_st_find(f, "embeddings.patch_embeddings.projection.weight"))
        return MAE_OK;
    return mae_fail(MAE_ERR_FORMAT, "no patch embedding weight: the file has neither 'patch_embed.proj.weight' (official MAE "
                    "names) nor 'vit.embeddings.patch_embeddings.projection.weight' (Hugging Face ViTMAE names)");
}

int mae_names_count_blocks(const mae_names *nm, int decoder)
{
    char pre[32];
    const char *bp = block_prefix(nm, decoder, pre, sizeof pre);
    size_t plen = strlen(bp);
    int count = 0;
    for (int i = 0; i < nm->f->n; i++) {
        const char *name = nm->f->t[i].name;
        int index;
        if (strncmp(name, bp, plen) == 0 && block_index(name + plen, &index) && index + 1 > count)
            count = index < MAX_INDEX ? index + 1 : MAX_INDEX;
    }
    return count;
}

int mae_names_has_decoder(const mae_names *nm)
{
    for (int i = 0; i < nm->f->n; i++) {
        const char *name = nm->f->t[i].name;
        if (nm->hf ? starts_with(name, "decoder.") : starts_with(name, "decoder_") || strcmp(name, "mask_token") == 0)
            return 1;
    }
    return 0;
}
