/* Training-time augmentations of `mae finetune` that main_finetune.py takes from timm, on
 * normalized images [C, H, W]. */
#ifndef MAE_CLI_AUGMENT_H
#define MAE_CLI_AUGMENT_H

#include <stdint.h>

/* A splitmix64 stream: the augmentations' own randomness, separate from the data order. */
uint64_t cli_aug_next(uint64_t *state);
double   cli_aug_uniform(uint64_t *state);   /* [0, 1) */

/* timm's RandomErasing(probability=prob, mode='pixel', max_count=1) as main_finetune.py's
 * --reprob uses it, after normalization: with probability prob, up to 10 attempts to draw a
 * rectangle of area uniform in [0.02, 1/3] of the image and log-aspect uniform in
 * [log 0.3, log 1/0.3], h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)) (half to even), which
 * must be below the image's height and width; the first that fits gets a uniform top-left corner
 * and its pixels (every channel) replaced by standard normal values. Returns 1 and the rectangle
 * in box[4] (top, left, h, w) when it erased, else 0 (img untouched). */
int cli_random_erase(float *img, int C, int H, int W, double prob, uint64_t *state, int box[4]);

#endif
