/* What `mae train` and `mae probe` share: Fashion-MNIST (IDX) loading, option parsing. */
#ifndef MAE_CLI_DATA_H
#define MAE_CLI_DATA_H

#include <stdint.h>

/* n images [n, 1, h, w], normalized with the Fashion-MNIST mean/std, and their labels (or NULL). */
typedef struct cli_images {
    float   *x;
    uint8_t *labels;
    int      n, h, w;
} cli_images;

/* Loads "<dir>/<split>-images-idx3-ubyte[.gz]" and, if want_labels, the matching labels file
 * (split is "train" or "t10k"); at most max images (0 = all). Prints the error and returns
 * non-zero on failure. */
int  cli_load_split(const char *cmd, const char *dir, const char *split, int want_labels,
                    int max, cli_images *out);
void cli_images_free(cli_images *im);

/* Wall-clock seconds (monotonic). */
double cli_now(void);

#endif
