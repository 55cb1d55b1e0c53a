/* The trainer's life cycle, settings and step (trainer.c), what src/api/trainer_api.c and the
 * trainer checkpoint (src/io/trainer_ckpt.c) call after their argument checks. Errors state the
 * problem without a public function's name; the caller adds its own (mae_fail_wrap). */
#ifndef MAE_TRAINER_H
#define MAE_TRAINER_H

#include "model.h"

/* The size of mae_train_config's first version (through train_pos); a caller built against that
 * header passes exactly these bytes, so they may never move. */
#define MAE_TRAIN_CONFIG_V1_SIZE (offsetof(mae_train_config, train_pos) + sizeof(int32_t))

/* Every field at its default (config_fields.h), struct_size set. */
void mae_train_config_defaults(mae_train_config *c);
/* Reads a caller's config of any size (missing fields keep the defaults) into c and checks it:
 * each field's range, then the rules between fields; fn names the source in the messages. */
mae_status mae_train_config_read(const char *fn, const mae_train_config *in, int max_batch,
                                 mae_train_config *c);

/* A trainer for m (master weights made first), its buffers planned for max_batch. */
mae_status mae_trainer_new(mae_model *m, int max_batch, mae_trainer **out);
void       mae_trainer_destroy(mae_trainer *t);
/* Whether the position tables of the parameters at base train: train_pos -1 means unless they
 * are the fixed sin-cos tables. No side effects, so a load can decide before it commits. */
mae_status mae_trainer_decide_pos(const mae_model *m, const float *base, int train_pos, int *tp, int *tdp);
/* The per-tensor flags for that decision (a frozen table's gradient slot zeroed). */
void       mae_trainer_apply_pos(mae_trainer *t, int tp, int tdp);
/* Both of the above for the trainer's own weights. */
mae_status mae_trainer_resolve_flags(mae_trainer *t, int train_pos);
/* (Re)allocates the per-thread scratch for n threads; the old one stays on failure. */
mae_status mae_trainer_set_scratch(mae_trainer *t, int n);
/* One optimizer step: gradient norm, clipping, AdamW at the scheduled lr, gradients zeroed,
 * weights repacked, step + 1. MAE_ERR_STATE (nothing updated) if the gradients are not finite. */
mae_status mae_trainer_take_step(mae_trainer *t);

#endif
