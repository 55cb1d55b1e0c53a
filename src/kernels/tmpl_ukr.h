/* The register micro-kernel (see gemm.h), written once against the vector layer and compiled
 * per instruction set. The layer defines MR (rows), NV (vectors per row, 2 or 3), VL, and
 * ROWS(X) expanding X(0) ... X(MR-1); the accumulators are named variables so that every
 * compiler keeps them in registers. Include after simd_*.h, tmpl_vmath.h and gemm.h. */
#include <string.h>
#include "../os/os.h"

#define NR (NV * VL)

/* The epilogue of one vector x at column offset j of row i (see mae_epi). */
static inline vf ISA(epi1)(vf x, const float *c, const float *bias, const float *res, int beta, int act)
{
    if (beta)
        x = vadd(vload(c), x);
    if (bias)
        x = vadd(x, vload(bias));
    if (act == MAE_ACT_GELU)
        x = vgelu(x);
    if (res)
        x = vadd(x, vload(res));
    return x;
}
#define EPI1(i, v) c##i##_##v = ISA(epi1)(c##i##_##v, cp + (i) * ld + (v) * VL, \
    e->bias ? e->bias + (v) * VL : NULL, e->res ? e->res + (i) * e->ldr + (v) * VL : NULL, \
    e->beta, e->act);

#if NV == 2
#define ACC_DECL(i) vf c##i##_0 = vzero(), c##i##_1 = vzero();
#define ACC_FMA(i) { vf a_ = vbcast(ap + i); \
    c##i##_0 = vfma(a_, b_0, c##i##_0); c##i##_1 = vfma(a_, b_1, c##i##_1); }
#define ACC_STORE(i) vstore(cp + (i) * ld, c##i##_0); vstore(cp + (i) * ld + VL, c##i##_1);
#define LOAD_B(p) vf b_0 = vload(p), b_1 = vload((p) + VL);
#define EPI_ROW(i) EPI1(i, 0) EPI1(i, 1)
#elif NV == 3
#define ACC_DECL(i) vf c##i##_0 = vzero(), c##i##_1 = vzero(), c##i##_2 = vzero();
#define ACC_FMA(i) { vf a_ = vbcast(ap + i); c##i##_0 = vfma(a_, b_0, c##i##_0); \
    c##i##_1 = vfma(a_, b_1, c##i##_1); c##i##_2 = vfma(a_, b_2, c##i##_2); }
#define ACC_STORE(i) vstore(cp + (i) * ld, c##i##_0); vstore(cp + (i) * ld + VL, c##i##_1); \
    vstore(cp + (i) * ld + 2 * VL, c##i##_2);
#define LOAD_B(p) vf b_0 = vload(p), b_1 = vload((p) + VL), b_2 = vload((p) + 2 * VL);
#define EPI_ROW(i) EPI1(i, 0) EPI1(i, 1) EPI1(i, 2)
#else
#error "NV must be 2 or 3"
#endif

/* Applies the epilogue to the tile t [MR][NR] and writes its mr x nr corner to c. Partial
 * tiles go through padded copies so that every element sees the same vector operations. */
static void ISA(epilogue)(const float *t, float *c, size_t ldc, int mr, int nr, const mae_epi *e)
{
    float bb[NR], cb[NR], rb[NR], ob[NR];
    const float *bias = e->bias;
    if (bias && nr < NR) {
        memset(bb, 0, sizeof bb);
        memcpy(bb, bias, (size_t)nr * sizeof *bb);
        bias = bb;
    }
    for (int i = 0; i < mr; i++) {
        float *ci = c + (size_t)i * ldc, *dst = ci;
        const float *cin = ci, *res = e->res ? e->res + (size_t)i * e->ldr : NULL;
        if (nr < NR) {
            if (e->beta) {
                memset(cb, 0, sizeof cb);
                memcpy(cb, ci, (size_t)nr * sizeof *cb);
                cin = cb;
            }
            if (res) {
                memset(rb, 0, sizeof rb);
                memcpy(rb, res, (size_t)nr * sizeof *rb);
                res = rb;
            }
            dst = ob;
        }
        for (int v = 0; v < NV; v++) {
            vf x = vload(t + (size_t)i * NR + v * VL);
            if (e->beta)
                x = vadd(vload(cin + v * VL), x);
            if (bias)
                x = vadd(x, vload(bias + v * VL));
            if (e->act == MAE_ACT_GELU)
                x = vgelu(x);
            if (res)
                x = vadd(x, vload(res + v * VL));
            vstore(dst + v * VL, x);
        }
        if (nr < NR)
            memcpy(ci, ob, (size_t)nr * sizeof *ci);
    }
}

void ISA(transpose)(float *d, size_t ldd, const float *a, size_t lda, int rows, int cols)
{
    int i = 0;
    for (; i + 4 <= rows; i += 4) {
        const float *s0 = a + (size_t)i * lda, *s1 = s0 + lda, *s2 = s1 + lda, *s3 = s2 + lda;
        int k = 0;
        for (; k + 4 <= cols; k += 4)
            vtr4(d + (size_t)k * ldd + i, ldd, s0 + k, s1 + k, s2 + k, s3 + k);
        for (; k < cols; k++) {
            float *dk = d + (size_t)k * ldd + i;
            dk[0] = s0[k]; dk[1] = s1[k]; dk[2] = s2[k]; dk[3] = s3[k];
        }
    }
    if (i + 2 <= rows) {
        const float *s0 = a + (size_t)i * lda, *s1 = s0 + lda;
        int k = 0;
        for (; k + 4 <= cols; k += 4)
            vtr2(d + (size_t)k * ldd + i, ldd, s0 + k, s1 + k);
        for (; k < cols; k++) {
            d[(size_t)k * ldd + i] = s0[k];
            d[(size_t)k * ldd + i + 1] = s1[k];
        }
        i += 2;
    }
    for (; i < rows; i++)
        for (int k = 0; k < cols; k++)
            d[(size_t)k * ldd + i] = a[(size_t)i * lda + k];
}

/* The common case of the A packer: one whole micro-panel, its MR rows transposed in. */
void ISA(pack_panel)(float *d, const float *a, size_t lda, int kc)
{
    ISA(transpose)(d, MR, a, lda, MR, kc);
}

/* The transposed case (A stored [K, M]), several panels, row by row of A. */
void ISA(pack_panels_t)(float *d, const float *a, size_t lda, int panels, int kc)
{
    size_t stride = (size_t)MR * kc;
    for (int k = 0; k < kc; k++) {
        const float *ak = a + (size_t)k * lda;
        float *dk = d + (size_t)k * MR;
        /* a constant-size copy: compilers emit vector moves for it, not MR scalar ones */
        for (int p = 0; p < panels; p++, ak += MR, dk += stride)
            memcpy(dk, ak, MR * sizeof *dk);
    }
}

void ISA(ukr)(int kc, const float *a, const float *b, float *c, size_t ldc, int mr, int nr,
              const mae_epi *e)
{
    ROWS(ACC_DECL)
    const float *ap = a, *bp = b;
    /* The tile of C read by the epilogue (partial sums, or the residual) comes from L2 or
     * further: ask for it now, the products hide the wait. */
    if (e->beta || e->res)
        for (int i = 0; i < mr; i++) {
            const float *ci = e->beta ? c + (size_t)i * ldc : e->res + (size_t)i * e->ldr;
            mae_prefetch(ci);
            mae_prefetch(ci + NR - 1);
        }
    for (int k = 0; k < kc; k++) {
        LOAD_B(bp) ROWS(ACC_FMA)
        ap += MR; bp += NR;
    }
    if (mr == MR && nr == NR) {
        /* a whole tile: the epilogue in registers */
        float *cp = c;
        size_t ld = ldc;
        if (e->beta || e->bias || e->res || e->act != MAE_ACT_NONE) {
            ROWS(EPI_ROW)
        }
        ROWS(ACC_STORE)
        return;
    }
    float t[MR * NR];
    {
        float *cp = t;
        size_t ld = NR;
        ROWS(ACC_STORE)
    }
    ISA(epilogue)(t, c, ldc, mr, nr, e);
}

#ifdef HALF_ROWS
/* The edge micro-kernel for a short last panel of A (at most MR/2 rows): two B panels at once,
 * so that the MR/2 x 2NR accumulators keep the FMA units as busy as a whole tile does. Each
 * element sees the operations of ukr. The left panel is whole; the right one has nr1 columns;
 * e is the left tile's epilogue (the right one's is derived). */
#define H_A(i) vf a##i = vbcast(ap + i);
#if NV == 2
#define H_DECL(i) vf l##i##_0 = vzero(), l##i##_1 = vzero(), r##i##_0 = vzero(), r##i##_1 = vzero();
#define H_STORE(i) vstore(tl + (i) * NR, l##i##_0); vstore(tl + (i) * NR + VL, l##i##_1); \
    vstore(tr + (i) * NR, r##i##_0); vstore(tr + (i) * NR + VL, r##i##_1);
#define H_STEP(side, v, src) { vf b_ = vload(src); HALF_ROWS(H_FMA_##side##v) }
#define H_FMA_L0(i) l##i##_0 = vfma(a##i, b_, l##i##_0);
#define H_FMA_L1(i) l##i##_1 = vfma(a##i, b_, l##i##_1);
#define H_FMA_R0(i) r##i##_0 = vfma(a##i, b_, r##i##_0);
#define H_FMA_R1(i) r##i##_1 = vfma(a##i, b_, r##i##_1);
#define H_ALL(pl, pr) H_STEP(L, 0, pl) H_STEP(L, 1, (pl) + VL) H_STEP(R, 0, pr) H_STEP(R, 1, (pr) + VL)
#else
#define H_DECL(i) vf l##i##_0 = vzero(), l##i##_1 = vzero(), l##i##_2 = vzero(), \
    r##i##_0 = vzero(), r##i##_1 = vzero(), r##i##_2 = vzero();
#define H_STORE(i) vstore(tl + (i) * NR, l##i##_0); vstore(tl + (i) * NR + VL, l##i##_1); \
    vstore(tl + (i) * NR + 2 * VL, l##i##_2); vstore(tr + (i) * NR, r##i##_0); \
    vstore(tr + (i) * NR + VL, r##i##_1); vstore(tr + (i) * NR + 2 * VL, r##i##_2);
#define H_STEP(side, v, src) { vf b_ = vload(src); HALF_ROWS(H_FMA_##side##v) }
#define H_FMA_L0(i) l##i##_0 = vfma(a##i, b_, l##i##_0);
#define H_FMA_L1(i) l##i##_1 = vfma(a##i, b_, l##i##_1);
#define H_FMA_L2(i) l##i##_2 = vfma(a##i, b_, l##i##_2);
#define H_FMA_R0(i) r##i##_0 = vfma(a##i, b_, r##i##_0);
#define H_FMA_R1(i) r##i##_1 = vfma(a##i, b_, r##i##_1);
#define H_FMA_R2(i) r##i##_2 = vfma(a##i, b_, r##i##_2);
#define H_ALL(pl, pr) H_STEP(L, 0, pl) H_STEP(L, 1, (pl) + VL) H_STEP(L, 2, (pl) + 2 * VL) \
    H_STEP(R, 0, pr) H_STEP(R, 1, (pr) + VL) H_STEP(R, 2, (pr) + 2 * VL)
#endif

void ISA(ukr_half)(int kc, const float *a, const float *b0, const float *b1, float *c, size_t ldc,
                   int mr, int nr1, const mae_epi *e)
{
    HALF_ROWS(H_DECL)
    const float *ap = a, *bl = b0, *br = b1;
    for (int k = 0; k < kc; k++) {
        HALF_ROWS(H_A)
        H_ALL(bl, br)
        ap += MR; bl += NR; br += NR;
    }
    float tl[MR * NR], tr[MR * NR];
    HALF_ROWS(H_STORE)
    mae_epi er = *e;
    er.bias = e->bias ? e->bias + NR : NULL;
    er.res = e->res ? e->res + NR : NULL;
    ISA(epilogue)(tl, c, ldc, mr, NR, e);
    ISA(epilogue)(tr, c + NR, ldc, mr, nr1, &er);
}

#undef H_A
#undef H_DECL
#undef H_STORE
#undef H_STEP
#undef H_ALL
#undef H_FMA_L0
#undef H_FMA_L1
#undef H_FMA_L2
#undef H_FMA_R0
#undef H_FMA_R1
#undef H_FMA_R2
#endif

#undef NR
#undef ACC_DECL
#undef ACC_FMA
#undef ACC_STORE
#undef LOAD_B
#undef EPI1
#undef EPI_ROW
