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

/* RandAugment-lite (randaug.c): timm's rand_augment_transform("rand-mM-mstdS-inc1") as
 * main_finetune.py's --aa uses it, on one 8-bit gray image [H, W] before normalization. layers
 * times: one of the 15 ops of timm's increasing set chosen uniformly (with replacement), run with
 * probability 0.5 at a level drawn from N(magnitude, mstd) clipped to [0, 10], the signed ones
 * (rotate, shears, translations, contrast / brightness / sharpness factors) negated half the
 * time. The ops follow the PIL calls timm makes: AutoContrast, Equalize, Invert,
 * Rotate (30 level/10 degrees), Posterize (keep 4 - int(4 level/10) bits), Solarize (above
 * 256 - int(256 level/10)), SolarizeAdd (+int(110 level/10) below 128), Color (nothing on gray),
 * Contrast / Brightness / Sharpness (factor 1 +- 0.9 level/10 against the mean / black /
 * smoothed image), ShearX/Y (0.3 level/10), TranslateX/YRel (0.45 level/10 of the side). Lite:
 * the affine ops resample bilinearly where the official passes bicubic; fill is the value of
 * the normalization mean (timm's img_mean). tmp: H * W bytes of scratch. */
enum { CLI_RA_OPS = 15 };
const char *cli_randaug_name(int op);
/* One op (index into the list above) at level in [0, 10], negated or not. */
void cli_randaug_apply(uint8_t *img, uint8_t *tmp, int H, int W, int op, double level, int negate,
                       uint8_t fill);
void cli_randaugment(uint8_t *img, uint8_t *tmp, int H, int W, int layers, double magnitude,
                     double mstd, uint8_t fill, uint64_t *state);
/* A timm policy string "rand-m<M>[-mstd<S>][-n<N>]-inc1" (any order after "rand"; m in [0, 10],
 * timm's defaults n 2, mstd 0) into its numbers: 0, or -1 if it is not of that form (inc1, the
 * increasing ops, is required: the only set here). */
int cli_randaug_parse(const char *policy, int *layers, double *magnitude, double *mstd);

#endif
