/* The fields of the two config structs, each listed once. Everything that handles a field one by
 * one is generated from these lists: mae_config <-> mae_cfg, the defaults, the range checks, the
 * __metadata__ keys of model files and trainer checkpoints (writer and reader), and the check
 * that a trainer checkpoint belongs to the trainer's model. Adding a field is one line here plus
 * its meaning in the code that uses it (docs/ARCHITECTURE.md, "Adding a config field").
 *
 * MAE_CONFIG_FIELDS(X) calls, per field of the model config (include/mae.h's mae_config), in the
 * order the metadata writer has always used (a new field goes last):
 *   X(pub, cfg, kind, def, lo, hi, flags)
 *     pub    the field of mae_config; also its __metadata__ key (the official constructor's name)
 *     cfg    the field of mae_cfg (model.h)
 *     kind   MAE_CF_INT (int32_t / int), MAE_CF_FLOAT (float), MAE_CF_BOOL (int32_t / int, 0 or 1)
 *     def    the default: the "base" preset's value (presets in src/api/model_api.c override it)
 *     lo, hi the accepted range; flags say whether an end is open
 *     flags  MAE_CF_OPEN_LO, MAE_CF_OPEN_HI: (lo or hi) excluded
 *            MAE_CF_DECODER: a decoder setting (checked, written and reported only with a decoder)
 *            MAE_CF_ARCH: a trainer checkpoint must agree with the model on it to resume
 *
 * MAE_TRAIN_CONFIG_FIELDS(X) calls, per field of mae_train_config (the trainer keeps that struct
 * itself, so there is no internal name; the metadata key is "trainer." pub):
 *   X(pub, kind, def, lo, hi, flags)
 *     kind   MAE_CF_INT, MAE_CF_FLOAT, MAE_CF_DOUBLE
 *     flags  MAE_CF_OPEN_LO, MAE_CF_OPEN_HI, MAE_CF_ANY (no range of its own: a rule between
 *            fields checks it, in mae_train_config_read, src/model/trainer.c)
 *
 * Rules between fields (heads divide the width, warmup before the end of the cosine, ...) and
 * derived values are code, in mae_cfg_finish (src/model/config.c) and mae_train_config_read
 * (src/model/trainer.c). */
#ifndef MAE_CONFIG_FIELDS_H
#define MAE_CONFIG_FIELDS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "mae.h"

#define MAE_CFG_LIMIT 65536   /* any single dimension above this is rejected as nonsense */

/*                   pub                 cfg         kind          def     lo    hi             flags */
#define MAE_CONFIG_FIELDS(X) \
    X(img_size,          img,        MAE_CF_INT,   224,    1,    MAE_CFG_LIMIT, 0) \
    X(img_height,        ih,         MAE_CF_INT,   0,      0,    MAE_CFG_LIMIT, MAE_CF_ARCH) \
    X(img_width,         iw,         MAE_CF_INT,   0,      0,    MAE_CFG_LIMIT, MAE_CF_ARCH) \
    X(patch_size,        p,          MAE_CF_INT,   16,     1,    MAE_CFG_LIMIT, MAE_CF_ARCH) \
    X(in_chans,          C,          MAE_CF_INT,   3,      1,    MAE_CFG_LIMIT, MAE_CF_ARCH) \
    X(embed_dim,         D,          MAE_CF_INT,   768,    1,    MAE_CFG_LIMIT, MAE_CF_ARCH) \
    X(depth,             depth,      MAE_CF_INT,   12,     1,    MAE_CFG_LIMIT, MAE_CF_ARCH) \
    X(num_heads,         H,          MAE_CF_INT,   12,     1,    MAE_CFG_LIMIT, MAE_CF_ARCH) \
    X(decoder_embed_dim, Dd,         MAE_CF_INT,   512,    1,    MAE_CFG_LIMIT, MAE_CF_DECODER | MAE_CF_ARCH) \
    X(decoder_depth,     ddepth,     MAE_CF_INT,   8,      1,    MAE_CFG_LIMIT, MAE_CF_DECODER | MAE_CF_ARCH) \
    X(decoder_num_heads, dH,         MAE_CF_INT,   16,     1,    MAE_CFG_LIMIT, MAE_CF_DECODER | MAE_CF_ARCH) \
    X(mlp_ratio,         mlp_ratio,  MAE_CF_FLOAT, 4.0,    0,    64,            MAE_CF_OPEN_LO) \
    X(norm_pix_loss,     norm_pix,   MAE_CF_BOOL,  0,      0,    1,             MAE_CF_ARCH) \
    X(mask_ratio,        mask_ratio, MAE_CF_FLOAT, 0.75,   0,    1,             MAE_CF_OPEN_HI) \
    X(layer_norm_eps,    eps,        MAE_CF_FLOAT, 1e-6,   0,    1,             MAE_CF_OPEN_LO | MAE_CF_ARCH) \
    X(decoder_mlp_hidden, dmlp,      MAE_CF_INT,   0,      0,    MAE_CFG_LIMIT, MAE_CF_DECODER) \
    X(qkv_bias,          qkv_bias,   MAE_CF_BOOL,  1,      0,    1,             MAE_CF_ARCH)

/* img_height / img_width: 0 means img_size (mae_cfg_finish resolves it). mlp_ratio is not
 * compared on resume: the MLP widths it gives are, through the tensor shapes; so is
 * decoder_mlp_hidden (0: the decoder's MLP width is (int)(decoder_embed_dim * mlp_ratio)).
 * qkv_bias 0: the blocks' q/k/v projections have no bias (Hugging Face's qkv_bias false): the
 * tensor table lists no attn.qkv.bias, so it is neither read, written nor trained. */

/*                         pub              kind           def      lo    hi         flags */
#define MAE_TRAIN_CONFIG_FIELDS(X) \
    X(accum_iter,      MAE_CF_INT,    1,       1,    INT32_MAX, 0) \
    X(blr,             MAE_CF_DOUBLE, 1.5e-4,  0,    INFINITY,  MAE_CF_OPEN_HI) \
    X(lr,              MAE_CF_DOUBLE, 0.0,     0,    INFINITY,  MAE_CF_OPEN_HI) \
    X(min_lr,          MAE_CF_DOUBLE, 0.0,     0,    INFINITY,  MAE_CF_OPEN_HI) \
    X(weight_decay,    MAE_CF_DOUBLE, 0.05,    0,    INFINITY,  MAE_CF_OPEN_HI) \
    X(beta1,           MAE_CF_DOUBLE, 0.9,     0,    1,         MAE_CF_OPEN_HI) \
    X(beta2,           MAE_CF_DOUBLE, 0.95,    0,    1,         MAE_CF_OPEN_HI) \
    X(eps,             MAE_CF_DOUBLE, 1e-8,    0,    INFINITY,  MAE_CF_OPEN_LO | MAE_CF_OPEN_HI) \
    X(warmup_epochs,   MAE_CF_DOUBLE, 40.0,    0,    0,         MAE_CF_ANY) \
    X(epochs,          MAE_CF_DOUBLE, 400.0,   0,    0,         MAE_CF_ANY) \
    X(iters_per_epoch, MAE_CF_INT,    0,       0,    INT32_MAX, 0) \
    X(batch_size,      MAE_CF_INT,    0,       0,    INT32_MAX, 0) \
    X(world_size,      MAE_CF_INT,    1,       1,    INT32_MAX, 0) \
    X(clip_grad,       MAE_CF_FLOAT,  0.0,     0,    INFINITY,  MAE_CF_OPEN_HI) \
    X(train_pos,       MAE_CF_INT,    -1,      -1,   1,         0)

enum { MAE_CF_INT, MAE_CF_FLOAT, MAE_CF_BOOL, MAE_CF_DOUBLE };
enum {
    MAE_CF_OPEN_LO = 1, MAE_CF_OPEN_HI = 2, MAE_CF_DECODER = 4, MAE_CF_ARCH = 8, MAE_CF_ANY = 16
};

/* One field, as the generic code below and src/io/config_meta.c handle it. */
typedef struct mae_field {
    const char *name;    /* the public field name */
    int kind;
    size_t pub_off;      /* offset in the public struct */
    size_t off;          /* offset in the internal struct (= pub_off for the training config) */
    double def, lo, hi;
    int flags;
} mae_field;

/* The lists as arrays (src/model/config.c), and an index per field: MAE_CFI_<cfg name> and
 * MAE_TCI_<pub name>, for code that needs one field by name. */
#define MAE_CF_INDEX(pub, cfg, ...) MAE_CFI_##cfg,
#define MAE_TC_INDEX(pub, ...) MAE_TCI_##pub,
enum { MAE_CONFIG_FIELDS(MAE_CF_INDEX) MAE_N_CONFIG_FIELDS };
enum { MAE_TRAIN_CONFIG_FIELDS(MAE_TC_INDEX) MAE_N_TRAIN_CONFIG_FIELDS };
#undef MAE_CF_INDEX
#undef MAE_TC_INDEX
extern const mae_field mae_config_fields[MAE_N_CONFIG_FIELDS];
extern const mae_field mae_train_config_fields[MAE_N_TRAIN_CONFIG_FIELDS];

/* A field's value in the struct at base (internal offsets), as a double (exact for every kind),
 * and back (rounded to float, truncated to int: the caller has range-checked it). */
double mae_field_get(const mae_field *f, const void *base);
void   mae_field_set(const mae_field *f, void *base, double v);
/* Whether v is inside the field's range. */
int    mae_field_in_range(const mae_field *f, double v);
/* Sets every field of the struct at base to its default. */
void   mae_fields_default(const mae_field *fields, int n, void *base);
/* The range check of every field whose flags do not meet skip: MAE_ERR_INVALID_ARG naming fn, the
 * field, its value and its range ("fn: name = v is out of range [lo, hi)"). */
mae_status mae_fields_check(const char *fn, const mae_field *fields, int n, const void *base, int skip);
/* The index of the first field with a flag in flags and none in skip whose value differs between
 * the structs at a and b, or -1. */
int mae_fields_first_diff(const mae_field *fields, int n, const void *a, const void *b, int flags, int skip);

#endif
