/* Mixed-precision training of a bf16 model (docs/PRECISION.md), as PyTorch's autocast does it but
 * with float32 results: the forward linears run in bf16 (the model's bf16 view: packed bf16
 * weights, inputs rounded, float32 sums), and the two products of each linear's backward take
 * bf16-rounded operands too: dx = r(dy)·r(W), dW += r(dy)ᵀ·r(x), r = round to nearest even
 * (mae_bf16_round). The operands are rounded into the trainer's two buffers and multiplied by
 * the table's float32 products: a product of two bf16 values is exact in float32, so this is
 * the reference semantics (bf16 operands, float32 sums) at float32 speed. Master weights,
 * gradients, AdamW moments, LayerNorm, softmax, GELU, the loss and the residual stream stay
 * float32; the bf16 packs are rewritten from the masters after each step (params.c). */
#include <string.h>
#include "finetune.h"   /* model.h, and the finetuner's sizes */
#include "../util/arena.h"

enum { ROUND_CHUNK = 1 << 14 };   /* floats per task of the rounding */

static size_t maxz(size_t a, size_t b) { return a > b ? a : b; }

/* The largest r(dy) [N,out] and r(x) [N,in] / r(W) [out,in] of one linear. */
static void need(size_t *dy, size_t *xw, size_t N, size_t in, size_t out)
{
    *dy = maxz(*dy, N * out);
    *xw = maxz(*xw, maxz(N * in, out * in));
}

/* (p first: tools/amalgamate.py reads a definition ending in "struct X *p) {" as a tagged macro) */
void mae_mixed_plan(struct mae_arena *p, mae_trainer *t)
{
    if (t->m->precision != MAE_PRECISION_BF16) {
        t->round_dy = t->round_xw = NULL;
        return;
    }
    const mae_cfg *c = &t->m->cfg;
    size_t B = (size_t)t->max_batch, Ne = B * (1 + (size_t)t->keep_cap), Nd = B * (1 + (size_t)c->L);
    size_t D = (size_t)c->D, Dd = (size_t)c->Dd, K = (size_t)c->C * c->p * c->p, dy = 0, xw = 0;
    /* sizes in size_t: each is at most an activation or a weight the plan already holds */
    need(&dy, &xw, B * (size_t)t->keep_cap, K, D);     /* patch embedding (the kept patches) */
    need(&dy, &xw, Ne, D, 3 * D);                       /* encoder qkv, proj, fc1, fc2 */
    need(&dy, &xw, Ne, D, D);
    need(&dy, &xw, Ne, D, (size_t)c->hidden);
    need(&dy, &xw, Ne, (size_t)c->hidden, D);
    need(&dy, &xw, Ne, D, Dd);                          /* decoder embedding */
    need(&dy, &xw, Nd, Dd, 3 * Dd);                     /* decoder blocks */
    need(&dy, &xw, Nd, Dd, Dd);
    need(&dy, &xw, Nd, Dd, (size_t)c->dhidden);
    need(&dy, &xw, Nd, (size_t)c->dhidden, Dd);
    need(&dy, &xw, B * (size_t)c->L, Dd, (size_t)c->P); /* prediction head */
    t->round_dy = mae_arena_take(p, dy, sizeof(float));
    t->round_xw = mae_arena_take(p, xw, sizeof(float));
}

/* The same sizes for the finetuner (finetune.c plans its own activations): the encoder's linears
 * on every token (N = B(1 + L)), the patch embedding on all B·L patches, and the classifier's
 * head (N = B, D -> classes). */
void mae_mixed_finetune_sizes(const mae_cfg *c, size_t B, size_t classes, size_t *dy, size_t *xw)
{
    size_t N = B * (1 + (size_t)c->L), D = (size_t)c->D;
    *dy = *xw = 0;
    need(dy, xw, B * (size_t)c->L, (size_t)c->C * c->p * c->p, D);
    need(dy, xw, N, D, 3 * D);
    need(dy, xw, N, D, D);
    need(dy, xw, N, D, (size_t)c->hidden);
    need(dy, xw, N, (size_t)c->hidden, D);
    need(dy, xw, B, D, classes);
}

/* mae_bf16_float(mae_bf16_round(x)): zero or subnormal -> signed zero, NaN -> quiet NaN, else to
 * nearest with ties to even (a carry into the exponent gives the next binade or inf, as it
 * should); without calls or branches (a call per element cost twice as much). */
static inline float round1(float x)
{
    uint32_t u, r;
    memcpy(&u, &x, sizeof u);
    r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    r = (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) & 0xffff0000u : r;
    r = (u & 0x7f800000u) == 0 ? u & 0x80000000u : r;
    memcpy(&x, &r, sizeof x);
    return x;
}

void mae_mixed_round(float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = round1(src[i]);
}

typedef struct round_job { float *dst; const float *src; size_t n; } round_job;

static void round_task(void *arg, int task, int thread)
{
    const round_job *r = arg;
    size_t i0 = (size_t)task * ROUND_CHUNK, i1 = r->n - i0 < ROUND_CHUNK ? r->n : i0 + ROUND_CHUNK;
    (void)thread;
    mae_mixed_round(r->dst + i0, r->src + i0, i1 - i0);
}

/* dst = r(src), n floats, element-wise over the threads (the split changes nothing). */
static void round_all(const mae_exec *ex, float *dst, const float *src, size_t n)
{
    round_job r = { dst, src, n };
    mae_parallel_for_op(ex, "bf16_round", (int)((n + ROUND_CHUNK - 1) / ROUND_CHUNK), round_task, &r);
}

void mae_mixed_linear_products(mae_trainer *t, float *dx, float *dw, const float *dy,
                               const float *x, const float *w, int N, int in, int out)
{
    const mae_kernels *k = t->m->k;
    const mae_exec *ex = &t->ex;
    round_all(ex, t->round_dy, dy, (size_t)N * out);
    if (dx) {
        round_all(ex, t->round_xw, w, (size_t)out * in);
        k->matmul_nn(ex, dx, t->round_dy, t->round_xw, N, in, out, 0);
    }
    if (dw) {
        round_all(ex, t->round_xw, x, (size_t)N * in);
        k->matmul_tn(ex, dw, t->round_dy, t->round_xw, out, in, N, 1);
    }
}
