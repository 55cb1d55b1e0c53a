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
        return "decoder.decoder_layers.";
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

mae_status mae_names_detect(const mae_st_file *f, mae_names *nm)
{
    nm->f = f;
    nm->hf = 0;
    nm->enc = "";
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
