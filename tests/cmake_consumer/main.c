/* The consumer that tests/check_cmake.sh builds through add_subdirectory, FetchContent and
 * find_package, and with the Makefile's libmae.a as the reference: the header and the library
 * must agree on the version, a "tiny" model's forward pass on a fixed image and seed must run,
 * and the printed line (kernel table, the loss to the bit) must be the same for every route.
 * tests/check_amalgamation.sh runs it against dist/libmae.c the same way, per kernel table. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "mae.h"

int main(void)
{
    mae_config cfg;
    mae_model *m = NULL;
    mae_ctx *c = NULL;
    float img[3 * 32 * 32], mask[64], loss = -1.0f;
    size_t params = 0;
    int L = 0, keep = 0, P = 0, removed = 0;
    if (mae_version() != MAE_VERSION_NUMBER || strcmp(mae_version_string(), MAE_VERSION_STRING) != 0) {
        printf("consumer: header %s, library %s\n", MAE_VERSION_STRING, mae_version_string());
        return 1;
    }
    for (int i = 0; i < 3 * 32 * 32; i++)
        img[i] = (float)((i * 7) % 23) / 11.0f - 1.0f;
    if (mae_config_init(&cfg, sizeof cfg, "tiny") != MAE_OK || cfg.img_size != 32 ||
        mae_model_create(&cfg, 7, &m) != MAE_OK || mae_model_num_params(m, &params) != MAE_OK ||
        mae_ctx_create(m, 1, &c) != MAE_OK || mae_ctx_get_dims(c, &L, &keep, &P) != MAE_OK ||
        L > 64 || mae_ctx_set_seed(c, 3) != MAE_OK ||
        mae_forward(c, img, 1, NULL, &loss, NULL, mask, NULL) != MAE_OK) {
        printf("consumer: failed: %s\n", mae_last_error());
        return 1;
    }
    for (int l = 0; l < L; l++)
        removed += mask[l] == 1.0f;
    mae_ctx_free(c);
    mae_model_free(m);
    if (!(loss > 0.0f) || !isfinite(loss) || removed != L - keep) {
        printf("consumer: loss %g, %d of %d patches removed, %d kept\n", loss, removed, L, keep);
        return 1;
    }
    printf("libmae %s, kernels %s: %zu parameters, %d patches, %d kept, loss %.9g (%a)\n",
           mae_version_string(), mae_kernels_name(), params, L, keep, loss, loss);
    return 0;
}
