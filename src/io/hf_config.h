/* Hugging Face ViTMAE config.json: the reader (into libmae's config fields) and the writer. The
 * keys and their meaning: docs/FORMAT.md, "Hugging Face directories". */
#ifndef MAE_HF_CONFIG_H
#define MAE_HF_CONFIG_H

#include <stddef.h>
#include "../model/model.h"
#include "../model/config_fields.h"
#include "safetensors.h"

#define MAE_HF_JSON_MAX (4u << 20)   /* bytes of config.json or an index accepted (real ones: < 100 KB) */

typedef struct mae_hf_config {
    mae_cfg c;                          /* the values config.json gives */
    int have[MAE_N_CONFIG_FIELDS];      /* which fields it gives */
    const char *key[MAE_N_CONFIG_FIELDS];   /* the config.json key of each given field */
    int intermediate;                   /* intermediate_size (the encoder's MLP width), 0 if absent */
} mae_hf_config;

/* Parses config.json text. A JSON object whose model_type is not "vit_mae" sets *is_vit_mae = 0
 * and is otherwise not looked at (timm's config.json is another format). Malformed JSON, a wrong
 * type or range is MAE_ERR_FORMAT; a setting libmae cannot compute (hidden_act other than gelu,
 * dropout, a non-square image) MAE_ERR_UNSUPPORTED, each naming the key and the value. */
mae_status mae_hf_config_parse(const char *text, size_t n, mae_hf_config *out, int *is_vit_mae);

/* Reads a whole small file (at most max bytes, else MAE_ERR_FORMAT) into a NUL-terminated buffer
 * to free with mae_free. */
mae_status mae_hf_read_small(const char *path, size_t max, char **text, size_t *n);

/* config.json for a model (every key the reader honours), as a NUL-terminated buffer to free
 * with mae_free. MAE_ERR_UNSUPPORTED for what the format cannot say (a non-square image). */
mae_status mae_hf_config_write(const mae_cfg *c, char **text, size_t *n);

/* ---- directories and shards (hf_dir.c) ------------------------------------------------------- */

/* What mae_model_load reads at path: a directory (model.safetensors, else
 * model.safetensors.index.json and its shards; config.json if there) or a file (a safetensors
 * file, or an index; config.json beside it). The shards of an index are read into one buffer and
 * presented as one file. *have_hf says whether a vit_mae config.json was read into *hf. On
 * failure *f is empty. Messages name the path. */
mae_status mae_hf_open(const char *path, mae_st_file *f, mae_hf_config *hf, int *have_hf);


#endif
