/* libFuzzer target: the Hugging Face config.json reader (src/io/hf_config.c) on arbitrary bytes.
 * Whatever the input, the reader answers without a crash, a leak or a read past the text; a
 * config it accepts that makes a valid model is written back by the writer and must read back
 * as the same settings. Seeds: tests/fuzz_corpus/config_json/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mae_hf_config hf, back;
    int vit_mae = 0, again = 0;
    if (mae_hf_config_parse((const char *)data, size, &hf, &vit_mae) != MAE_OK || !vit_mae)
        return 0;
    mae_cfg c = hf.c;   /* defaults with the given keys over them */
    if (hf.intermediate > 0)
        c.mlp_ratio = (float)hf.intermediate / (float)c.D;
    if (mae_cfg_finish(&c) != MAE_OK)
        return 0;
    char *text = NULL;
    size_t n = 0;
    if (mae_hf_config_write(&c, &text, &n) != MAE_OK)
        return 0;   /* a non-square size: refused, not written */
    if (mae_hf_config_parse(text, n, &back, &again) != MAE_OK || !again)
        abort();
    if (back.c.D != c.D || back.c.H != c.H || back.c.depth != c.depth || back.c.eps != c.eps ||
        back.c.mask_ratio != c.mask_ratio || back.c.norm_pix != c.norm_pix || back.c.qkv_bias != c.qkv_bias ||
        back.intermediate != c.hidden || back.c.p != c.p || back.c.C != c.C)
        abort();
    mae_free(text);
    return 0;
}
