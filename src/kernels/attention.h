/* Multi-head attention on top of a tier's micro-kernel (attention.c): per (sequence, head) and
 * block of nr queries, Q, K, V read straight from the qkv projection's output, one tile of
 * scores [keys, nr] at a time. Sequences up to a threshold take the exact path (all keys in one
 * block, the softmax rows can be saved); longer ones without saved rows take the online-softmax
 * (flash) path over key blocks. Scratch per thread is O(T * head_dim) either way. */
#ifndef MAE_ATTENTION_H
#define MAE_ATTENTION_H

#include <stddef.h>
#include "kernels.h"
#include "gemm.h"

/* A tier's column operations on a score tile s [rows][nr] (nr = the tier's micro-tile width,
 * one column per query), used for the softmax down the columns. */
typedef struct mae_attn_isa {
    const mae_gemm_isa *g;
    void (*scale_colmax)(float *s, int rows, float scale, float *mx);   /* s *= scale; mx[j] = max of column j */
    void (*exp_colsum)(float *s, int rows, const float *m, float *sum); /* s = exp(s - m[j]); sum[j] = column sum */
    void (*scale_cols)(float *s, int rows, const float *f);             /* s[i][j] *= f[j] */
    /* The softmax backward of one row: ds = p * (ds - sum(p * ds)) * scale (ds holds dP). */
    void (*softmax_backward_row)(float *ds, const float *p, int n, float scale);
} mae_attn_isa;

/* Sequences longer than this use the flash path when probs is NULL. */
#define MAE_FLASH_MIN_T 512
/* Keys per block on the flash path. */
#define MAE_FLASH_KEYS 256

size_t mae_attention_scratch_floats(const mae_attn_isa *ai, int max_t, int max_c);

/* The kernels.h attention contract; flash_min_t is MAE_FLASH_MIN_T except in tests. */
void mae_attention_run(const mae_attn_isa *ai, const mae_exec *ex, float *out, float *probs,
                       const float *qkv, int B, int T, int C, int H, int flash_min_t);

/* The backward of mae_attention_run (the kernels.h attention_backward contract), and its
 * per-thread scratch: one [T, T] tile of score gradients plus the packed operands of a head. */
size_t mae_attention_backward_scratch_floats(const mae_attn_isa *ai, int max_t, int max_c);
void mae_attention_backward_run(const mae_attn_isa *ai, const mae_exec *ex, float *dqkv,
                                const float *dout, const float *qkv, const float *probs,
                                int B, int T, int C, int H);

#endif
