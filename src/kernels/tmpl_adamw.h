/* The AdamW update of a tier (see mae_kernels.adamw), in double like the scalar reference:
 * every lane runs the same IEEE double operations in the same order and the same conversions,
 * so the result is bitwise the scalar one (no fused multiply-add: each product is rounded, as
 * in the reference). The tail goes to the scalar function itself. Include after simd_*.h. */

void ISA(adamw)(float *w, float *m1, float *m2, const float *g, size_t n, const mae_adamw_hp *h)
{
    vdbl gm = vd_set1(h->grad_mul), c1 = vd_set1(h->one_minus_beta1), b2 = vd_set1(h->beta2);
    vdbl c2 = vd_set1(h->one_minus_beta2), decay = vd_set1(h->decay), step = vd_set1(h->step_size);
    vdbl bc2 = vd_set1(h->bc2_sqrt), eps = vd_set1(h->eps);
    size_t j = 0;
    for (; j + DL <= n; j += DL) {
        vdbl gd = vd_mul(vd_loadf(g + j), gm);
        vdbl a = vd_loadf(m1 + j);
        vd_storef(m1 + j, vd_add(a, vd_mul(c1, vd_sub(gd, a))));
        vd_storef(m2 + j, vd_add(vd_mul(b2, vd_loadf(m2 + j)), vd_mul(vd_mul(c2, gd), gd)));
        /* the moments are used as stored (rounded to float), as torch's float32 state is */
        vdbl denom = vd_add(vd_div(vd_sqrt(vd_loadf(m2 + j)), bc2), eps);
        vdbl upd = vd_div(vd_mul(step, vd_loadf(m1 + j)), denom);
        vd_storef(w + j, vd_sub(vd_mul(vd_loadf(w + j), decay), upd));
    }
    if (j < n)
        mae_scalar_adamw(w + j, m1 + j, m2 + j, g + j, n - j, h);
}
