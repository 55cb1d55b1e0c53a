/* libFuzzer target: mae_image_load_memory on PNG bytes (and anything else: the signature picks the
 * decoder). A file that loads is re-encoded and must load back identical, which also exercises
 * the encoder on every shape the fuzzer finds. Seeds: tests/fuzz_corpus/png/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *px = NULL;
    int w, h, c;
    /* the last byte picks the requested channel count, so conversions are fuzzed too */
    int want = size ? data[size - 1] % 5 : 0;
    if (mae_image_load_memory(data, size, want, &px, &w, &h, &c) != MAE_OK)
        return 0;
    if (w <= 0 || h <= 0 || c < 1 || c > 4 || (want && c != want))
        abort();
    uint8_t *png = NULL;
    size_t n = 0;
    /* small images only: the re-encode is the slow part */
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
