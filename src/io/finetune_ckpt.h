/* The finetuner checkpoint (finetune_ckpt.c): what mae_finetuner_save writes and
 * mae_finetuner_load reads. Errors state the problem; the public calls add their name. */
#ifndef MAE_FINETUNE_CKPT_H
#define MAE_FINETUNE_CKPT_H

#include "../model/finetune.h"

/* The classifier file of f's classifier plus "optim.exp_avg(_sq).<name>" and the step, seed and
 * config as "finetune.<field>" metadata, atomically. */
mae_status mae_finetune_ckpt_save(const mae_finetuner *f, const char *path);
/* All of that from path into f, whose classifier must have the file's architecture and pooling.
 * Either everything is restored or nothing changes; the message of a failure starts with 'path'. */
mae_status mae_finetune_ckpt_load(mae_finetuner *f, const char *path);

#endif
