/* The trainer checkpoint (trainer_ckpt.c): what mae_trainer_save writes and mae_trainer_load
 * reads. Errors state the problem; the public calls add their name. */
#ifndef MAE_TRAINER_CKPT_H
#define MAE_TRAINER_CKPT_H

#include "../model/model.h"

/* Writes t's weights, AdamW moments, RNG, counters and training config to path, atomically. */
mae_status mae_trainer_ckpt_save(const mae_trainer *t, const char *path);
/* Restores all of that from path into t, whose model must have the file's architecture. Either
 * everything is restored or nothing changes. */
mae_status mae_trainer_ckpt_load(mae_trainer *t, const char *path);

#endif
