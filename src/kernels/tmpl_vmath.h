/* Vector exp, erf and GELU, written once against the vector layer (simd_*.h must be included
 * first) and compiled per instruction set. The polynomial coefficients were fitted for this
 * library (minimax in the relative error, against 40-digit references); tests/test_kernels.c
 * checks every tier against libm over a dense sweep.
 *
 * vexp:  |error| <= ~1 ulp for x in [-87.3, 88]; 0 below, saturates above (callers pass x <= 0).
 * verf:  |error| <= ~1 ulp everywhere; NaN propagates.
 * vgelu: 0.5 x (1 + erf(x / sqrt 2)), the exact form (not the tanh approximation). */

/* exp(x) = 2^n * e^r, n = round(x / ln 2), |r| <= ln2 / 2, e^r = 1 + r + r^2 q(r) */
static inline vf vexp(vf x)
{
    vf lo = vset1(-87.33654f);
    vf xc = vmin(vset1(88.0f), vmax(lo, x));   /* constant first: NaN in x propagates */
    vf n = vround(vmul(xc, vset1(1.44269504088896341f)));
    vf r = vfnma(n, vset1(0.693359375f), xc);          /* ln 2 split in two: n*hi is exact */
    r = vfnma(n, vset1(-2.12194440054690583e-4f), r);
    vf q = vset1(0.0013813144630314151f);
    q = vfma(q, r, vset1(0.0083694189651382228f));
    q = vfma(q, r, vset1(0.041668456795012077f));
    q = vfma(q, r, vset1(0.16666514790310186f));
    q = vfma(q, r, vset1(0.49999993050663394f));
    vf y = vadd(vfma(q, vmul(r, r), r), vset1(1.0f));
    y = vmul(y, vpow2i(n));
    return vselect(vlt(x, lo), vzero(), y);
}

/* erf: |x| < 1: x * P(x^2), evaluated as x + x (P - 1); 1 <= |x|: sign(x) * (1 - exp(Q(|x| - 1))), Q ~ log erfc on [1, 4]
 * (erf rounds to 1 beyond 4). */
static inline vf verf(vf x)
{
    vf ax = vabs(x);
    vf x2 = vmul(x, x);
    vf p = vset1(7.8538882098577734e-05f);   /* P(x^2) - 1: x + x*(P - 1) keeps x exact */
    p = vfma(p, x2, vset1(-0.00080102026199439791f));
    p = vfma(p, x2, vset1(0.0051883288460323057f));
    p = vfma(p, x2, vset1(-0.026853812655228571f));
    p = vfma(p, x2, vset1(0.11283585170394742f));
    p = vfma(p, x2, vset1(-0.37612625827070012f));
    p = vfma(p, x2, vset1(0.1283791657277744f));
    vf small = vfma(x, p, x);
    vf t = vsub(vmin(vset1(4.0f), ax), vset1(1.0f));
    vf q = vset1(-2.1686756864008894e-05f);
    q = vfma(q, t, vset1(0.00028952792276111528f));
    q = vfma(q, t, vset1(-0.0020119664104358836f));
    q = vfma(q, t, vset1(0.010046452209906243f));
    q = vfma(q, t, vset1(-0.041563480770703431f));
    q = vfma(q, t, vset1(-0.84310708173766513f));
    q = vfma(q, t, vset1(-2.6389675145292868f));
    q = vfma(q, t, vset1(-1.8496055100666335f));
    vf large = vcopysign(vsub(vset1(1.0f), vexp(q)), x);
    return vselect(vlt(ax, vset1(1.0f)), small, large);
}

static inline vf vgelu(vf x)
{
    vf h = vmul(x, vset1(0.5f));
    return vfma(h, verf(vmul(x, vset1(0.70710678118654752f))), h);
}
