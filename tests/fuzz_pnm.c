/* libFuzzer target: mae_image_load_memory on PGM/PPM bytes. A file that loads is written back as
 * a PNG in memory and must load back identical. Seeds: tests/fuzz_corpus/pnm/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *px = NULL;
    int w, h, c;
    if (mae_image_load_memory(data, size, 0, &px, &w, &h, &c) != MAE_OK)
        return 0;
    if (w <= 0 || h <= 0 || c < 1 || c > 4)
        abort();
    uint8_t *png = NULL;
    size_t n = 0;
    if ((size_t)w * (size_t)h <= 1u << 16 && mae_png_encode(px, w, h, c, 0, &png, &n) == MAE_OK) {
        uint8_t *back = NULL;
        int w2, h2, c2;
        if (mae_image_load_memory(png, n, 0, &back, &w2, &h2, &c2) != MAE_OK || w2 != w || h2 != h ||
            c2 != c || memcmp(back, px, (size_t)w * h * c) != 0)
            abort();
        mae_image_free(back);
        mae_image_free(png);
    }
    mae_image_free(px);
    return 0;
}
