/* Config fields (src/model/config_fields.h) as __metadata__ string pairs: the one writer and the
 * one reader that model files and trainer checkpoints share. */
#ifndef MAE_CONFIG_META_H
#define MAE_CONFIG_META_H

#include "../model/model.h"
#include "../model/config_fields.h"
#include "safetensors.h"

/* Appends one pair per field of the struct at base, except fields with a flag in skip, under the
 * key prefix + name, at meta[n]; returns the new count. Values are written so that the reader
 * gives back the same bits: ints in decimal, bools as true / false, floats with 9 and doubles
 * with 17 significant digits ('.' whatever the locale). */
int mae_meta_put_fields(mae_st_meta *meta, int n, const char *prefix, const mae_field *fields, int nf,
                        const void *base, int skip);

/* Appends the pair key = value; returns the new count. */
int mae_meta_put(mae_st_meta *meta, int n, const char *key, const char *value);

/* The model config as every libmae file carries it (model files and trainer checkpoints alike):
 * the decoder's keys only when the model has one. */
int mae_meta_put_config(mae_st_meta *meta, int n, const mae_cfg *c);

/* Reads every field whose key (prefix + name) the file has into the struct at base; have[i]
 * (may be NULL) says which were there. A field whose public offset is below required_below (the
 * struct's first version: every file of this kind has those keys) must be there. Malformed
 * values are MAE_ERR_FORMAT naming the key; ranges are the caller's to check. */
mae_status mae_meta_get_fields(const mae_st_file *f, const char *prefix, const mae_field *fields, int nf,
                               void *base, int *have, size_t required_below);

/* A number as the writer writes it: a decimal, or (doubles only) printf's nan / inf spellings,
 * which a diverged run may have saved. 0 if s is neither. */
int mae_meta_parse_number(const char *s, int allow_nonfinite, double *v);

#endif
