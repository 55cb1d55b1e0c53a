/* libFuzzer target: mae_idx_load_memory on IDX bytes, plain or gzip (so the gzip container and
 * the DEFLATE decoder are fuzzed here too). A result must be consistent with its dimensions.
 * Seeds: tests/fuzz_corpus/idx/. */
#include <stdint.h>
#include <stdlib.h>
#include "mae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *values = NULL;
    int nd = 0;
    int64_t dims[4];
    if (mae_idx_load_memory(data, size, &values, &nd, dims) != MAE_OK)
        return 0;
    if (nd < 1 || nd > 4 || !values)
        abort();
    int64_t count = 1;
    for (int i = 0; i < nd; i++) {
        if (dims[i] <= 0)
            abort();
        count *= dims[i];
    }
    /* touch every value: ASan catches a buffer shorter than the dimensions say */
    volatile uint8_t sum = 0;
    for (int64_t i = 0; i < count; i++)
        sum ^= values[i];
    (void)sum;
    mae_image_free(values);
    return 0;
}
