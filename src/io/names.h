/* Tensor names in checkpoint files: the official MAE state_dict names, which the model's tensor
 * table uses, and Hugging Face ViTMAE names (separate query/key/value; the encoder under "vit."
 * in ViTMAEForPreTraining, without it in ViTMAEModel; the decoder's layers under
 * "decoder.decoder_layers." as transformers 4 writes them or "decoder.decoder_encoder.layer." as
 * transformers 5 does). */
#ifndef MAE_NAMES_H
#define MAE_NAMES_H

#include <stddef.h>
#include "safetensors.h"

typedef struct mae_names {
    const mae_st_file *f;
    int hf;                 /* Hugging Face names */
    const char *enc;        /* Hugging Face encoder prefix: "vit." or "" */
    const char *dec;        /* Hugging Face decoder layer prefix: MAE_HF_DEC_V4 or MAE_HF_DEC_V5 */
} mae_names;

#define MAE_HF_DEC_V4 "decoder.decoder_layers."
#define MAE_HF_DEC_V5 "decoder.decoder_encoder.layer."

/* Hugging Face names as transformers 5 writes them, encoder under "vit." or not (f NULL: for
 * writing). */
void mae_names_hf_v5(mae_names *nm, int vit_prefix);

/* Decides which names f uses from its patch embedding weight and its decoder layer names;
 * MAE_ERR_FORMAT if it has no patch embedding weight or mixes schemes (official and Hugging
 * Face names, "vit." and bare encoder names, or both decoder layer namings). */
mae_status mae_names_detect(const mae_st_file *f, mae_names *nm);

/* The file's name for an official tensor name. A fused qkv tensor is three tensors in Hugging
 * Face files (query, key, value): part selects one. Returns the number of parts (1, or 3 for a
 * split qkv), or 0 when the name does not fit out. */
int mae_names_map(const mae_names *nm, const char *official, int part, char *out, size_t cap);

/* 1 + the highest block index in the file's encoder (decoder) block names, 0 if none. Indices
 * above 10^6 count as 10^6 (the config check rejects that depth). */
int mae_names_count_blocks(const mae_names *nm, int decoder);

/* Whether the file holds any decoder tensor. */
int mae_names_has_decoder(const mae_names *nm);

/* The file's entry for part `part` of an official tensor, or NULL. */
const mae_st_entry *mae_names_find(const mae_names *nm, const char *official, int part);

#endif
