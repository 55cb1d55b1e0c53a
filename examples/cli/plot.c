/* The loss plots of `mae train` and `mae finetune`: axes, log-scale loss, lr or test accuracy,
 * and labels in a 3x5 pixel font. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "plot.h"

enum { W = 800, H = 440, LEFT = 70, RIGHT = 70, TOP = 30, BOTTOM = 50 };

typedef struct canvas {
    uint8_t *px;
} canvas;

static void dot(canvas *c, int x, int y, const uint8_t rgb[3])
{
    if (x < 0 || y < 0 || x >= W || y >= H)
        return;
    memcpy(c->px + ((size_t)y * W + (size_t)x) * 3, rgb, 3);
}

static void line(canvas *c, double x0, double y0, double x1, double y1, const uint8_t rgb[3])
{
    int steps = (int)ceil(fmax(fabs(x1 - x0), fabs(y1 - y0))) + 1;
    for (int i = 0; i <= steps; i++) {
        double t = (double)i / steps;
        dot(c, (int)lround(x0 + t * (x1 - x0)), (int)lround(y0 + t * (y1 - y0)), rgb);
    }
}

/* 3x5 glyphs, one row per 3 bits (top row first). */
static int glyph(char ch)
{
    static const char *chars = "0123456789.-elostrpg +ach%";
    static const int rows[] = {
        0x7B6F, 0x2C97, 0x73E7, 0x73CF, 0x5BC9, 0x79CF, 0x79EF, 0x7249, 0x7BEF, 0x7BCF,
        0x0002, 0x01C0, 0x2BE3 /* e */, 0x6497 /* l */, 0x0F6F /* o */, 0x388E /* s */,
        0x2E93 /* t */, 0x0BA4 /* r */, 0x6BA4 /* p */, 0x3ACE /* g */, 0x0000, 0x05D0 /* + */,
        0x076B /* a */, 0x0723 /* c */, 0x49AD /* h */, 0x52A5 /* % */ };
    const char *p = strchr(chars, ch);
    return p ? rows[p - chars] : 0;
}

static void text(canvas *c, int x, int y, const char *s, int scale, const uint8_t rgb[3])
{
    for (; *s; s++, x += 4 * scale) {
        int g = glyph(*s);
        for (int r = 0; r < 5; r++)
            for (int k = 0; k < 3; k++)
                if (g >> (14 - (r * 3 + k)) & 1)
                    for (int dy = 0; dy < scale; dy++)
                        for (int dx = 0; dx < scale; dx++)
                            dot(c, x + k * scale + dx, y + r * scale + dy, rgb);
    }
}

static void number(canvas *c, int x, int y, double v, const uint8_t rgb[3], int right_align)
{
    char buf[32];
    if (v == floor(v) && fabs(v) < 1e9)   /* step counts and round values: all digits */
        snprintf(buf, sizeof buf, "%.0f", v);
    else if (fabs(v) < 1e-2 || fabs(v) >= 1e5)
        snprintf(buf, sizeof buf, "%.1e", v);
    else
        snprintf(buf, sizeof buf, "%.3g", v);
    int w = (int)strlen(buf) * 8;
    text(c, right_align ? x - w : x, y, buf, 2, rgb);
}

int cli_plot_loss(const char *cmd, const char *path, const float *loss, const float *lr, int n)
{
    static const uint8_t black[3] = { 0, 0, 0 }, grey[3] = { 190, 190, 190 },
                         light[3] = { 232, 232, 232 }, blue[3] = { 31, 90, 180 },
                         orange[3] = { 230, 120, 20 };
    if (n < 1)
        return cli_errorf(cmd, "%s: no steps to plot", path);
    canvas c = { malloc((size_t)W * H * 3) };
    if (!c.px)
        return cli_errorf(cmd, "%s: out of memory for the plot", path);
    memset(c.px, 255, (size_t)W * H * 3);
    double lo = INFINITY, hi = -INFINITY, lrmax = 0;
    for (int i = 0; i < n; i++) {
        if (loss[i] > 0 && isfinite(loss[i])) {
            lo = fmin(lo, loss[i]);
            hi = fmax(hi, loss[i]);
        }
        lrmax = fmax(lrmax, lr[i]);
    }
    if (!(lo < hi)) {
        lo = lo > 0 && isfinite(lo) ? lo / 2 : 0.1;
        hi = lo * 4;
    }
    double l0 = floor(log10(lo) * 4) / 4, l1 = ceil(log10(hi) * 4) / 4;
    int pw = W - LEFT - RIGHT, ph = H - TOP - BOTTOM;
    double xs = n > 1 ? (double)pw / (n - 1) : 0;
    /* grid lines at 1, 2, 5 times powers of ten inside the range */
    for (int e = (int)floor(l0); e <= (int)ceil(l1); e++)
        for (int k = 0; k < 3; k++) {
            double v = (k == 0 ? 1 : k == 1 ? 2 : 5) * pow(10, e), lv = log10(v);
            if (lv < l0 || lv > l1)
                continue;
            double y = TOP + ph * (l1 - lv) / (l1 - l0);
            line(&c, LEFT, y, LEFT + pw, y, light);
            number(&c, LEFT - 6, (int)y - 5, v, black, 1);
        }
    for (int i = 1; i < n; i++) {
        double y0 = TOP + ph * (l1 - log10(fmax(loss[i - 1], lo))) / (l1 - l0);
        double y1 = TOP + ph * (l1 - log10(fmax(loss[i], lo))) / (l1 - l0);
        line(&c, LEFT + (i - 1) * xs, y0, LEFT + i * xs, y1, grey);
    }
    int win = n / 100 > 1 ? n / 100 : 1;   /* moving average over 1% of the run */
    double sum = 0, prev_y = 0;
    for (int i = 0; i < n; i++) {
        sum += loss[i];
        if (i >= win)
            sum -= loss[i - win];
        double avg = sum / (i + 1 < win ? i + 1 : win);
        double y = TOP + ph * (l1 - log10(fmax(avg, lo))) / (l1 - l0);
        if (i > 0)
            line(&c, LEFT + (i - 1) * xs, prev_y, LEFT + i * xs, y, blue);
        prev_y = y;
    }
    if (lrmax > 0)
        for (int i = 1; i < n; i++)
            line(&c, LEFT + (i - 1) * xs, TOP + ph * (1 - lr[i - 1] / lrmax), LEFT + i * xs,
                 TOP + ph * (1 - lr[i] / lrmax), orange);
    line(&c, LEFT, TOP, LEFT, TOP + ph, black);
    line(&c, LEFT, TOP + ph, LEFT + pw, TOP + ph, black);
    line(&c, LEFT + pw, TOP, LEFT + pw, TOP + ph, black);
    for (int k = 0; k <= 4; k++) {
        double x = LEFT + pw * k / 4.0;
        line(&c, x, TOP + ph, x, TOP + ph + 5, black);
        number(&c, (int)x - 8, TOP + ph + 10, floor((n - 1) * k / 4.0), black, 0);
    }
    number(&c, LEFT + pw + 6, TOP - 5, lrmax, orange, 0);
    number(&c, LEFT + pw + 6, TOP + ph - 5, 0, orange, 0);
    text(&c, LEFT, 8, "loss", 2, blue);
    text(&c, LEFT + 48, 8, "lr", 2, orange);
    text(&c, LEFT + pw / 2 - 16, H - 18, "step", 2, black);
    mae_status s = mae_png_write(path, c.px, W, H, 3, 0);
    free(c.px);
    return s == MAE_OK ? 0 : cli_fail(cmd, path, s);
}

/* The log-scale range [*l0, *l1] (log10, quarter decades) of the positive finite values, with
 * grid lines and their labels at 1, 2, 5 times powers of ten. */
static void log_axis(canvas *c, const float *v, int n, int ph, double *l0, double *l1)
{
    static const uint8_t black[3] = { 0, 0, 0 }, light[3] = { 232, 232, 232 };
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (v[i] > 0 && isfinite(v[i])) {
            lo = fmin(lo, v[i]);
            hi = fmax(hi, v[i]);
        }
    if (!(lo < hi)) {
        lo = lo > 0 && isfinite(lo) ? lo / 2 : 0.1;
        hi = lo * 4;
    }
    *l0 = floor(log10(lo) * 4) / 4;
    *l1 = ceil(log10(hi) * 4) / 4;
    for (int e = (int)floor(*l0); e <= (int)ceil(*l1); e++)
        for (int k = 0; k < 3; k++) {
            double g = (k == 0 ? 1 : k == 1 ? 2 : 5) * pow(10, e), lg = log10(g);
            if (lg < *l0 || lg > *l1)
                continue;
            double y = TOP + ph * (*l1 - lg) / (*l1 - *l0);
            line(c, LEFT, y, W - RIGHT, y, light);
            number(c, LEFT - 6, (int)y - 5, g, black, 1);
        }
}

int cli_plot_finetune(const char *cmd, const char *path, const float *loss_x, const float *loss, int n,
                      const float *acc_x, const float *acc, int m)
{
    static const uint8_t black[3] = { 0, 0, 0 }, grey[3] = { 190, 190, 190 },
                         blue[3] = { 31, 90, 180 }, green[3] = { 20, 150, 60 };
    if (n < 1 && m < 1)
        return cli_errorf(cmd, "%s: nothing to plot", path);
    canvas c = { malloc((size_t)W * H * 3) };
    if (!c.px)
        return cli_errorf(cmd, "%s: out of memory for the plot", path);
    memset(c.px, 255, (size_t)W * H * 3);
    int pw = W - LEFT - RIGHT, ph = H - TOP - BOTTOM;
    double xmax = 0;
    for (int i = 0; i < n; i++)
        xmax = fmax(xmax, loss_x[i]);
    for (int i = 0; i < m; i++)
        xmax = fmax(xmax, acc_x[i]);
    xmax = xmax > 0 ? ceil(xmax) : 1;
    double l0, l1;
    log_axis(&c, loss, n, ph, &l0, &l1);
#define X(e) (LEFT + pw * (e) / xmax)
#define YL(v) (TOP + ph * (l1 - log10(fmax((v), pow(10, l0)))) / (l1 - l0))
    for (int i = 1; i < n; i++)
        line(&c, X(loss_x[i - 1]), YL(loss[i - 1]), X(loss_x[i]), YL(loss[i]), grey);
    int win = n / 50 > 1 ? n / 50 : 1;   /* moving average over 2% of the points */
    double sum = 0, prev_y = 0;
    for (int i = 0; i < n; i++) {
        sum += loss[i];
        if (i >= win)
            sum -= loss[i - win];
        double y = YL(sum / (i + 1 < win ? i + 1 : win));
        if (i > 0)
            line(&c, X(loss_x[i - 1]), prev_y, X(loss_x[i]), y, blue);
        prev_y = y;
    }
    /* accuracy: its own linear scale on the right, whole multiples of 5 around the values */
    double a0 = 100, a1 = 0;
    for (int i = 0; i < m; i++) {
        a0 = fmin(a0, acc[i]);
        a1 = fmax(a1, acc[i]);
    }
    a0 = m ? fmax(0, floor((a0 - 1) / 5) * 5) : 0;
    a1 = m ? fmin(100, ceil((a1 + 1) / 5) * 5) : 100;
#define YA(v) (TOP + ph * (a1 - (v)) / (a1 - a0))
    for (int i = 0; i < m; i++) {
        if (i > 0)
            line(&c, X(acc_x[i - 1]), YA(acc[i - 1]), X(acc_x[i]), YA(acc[i]), green);
        for (int d = -2; d <= 2; d++)   /* a cross at each evaluation */
            dot(&c, (int)lround(X(acc_x[i])) + d, (int)lround(YA(acc[i])), green),
            dot(&c, (int)lround(X(acc_x[i])), (int)lround(YA(acc[i])) + d, green);
    }
    line(&c, LEFT, TOP, LEFT, TOP + ph, black);
    line(&c, LEFT, TOP + ph, LEFT + pw, TOP + ph, black);
    line(&c, LEFT + pw, TOP, LEFT + pw, TOP + ph, black);
    for (int k = 0; k <= 4; k++) {
        double x = LEFT + pw * k / 4.0, e = xmax * k / 4.0;
        line(&c, x, TOP + ph, x, TOP + ph + 5, black);
        number(&c, (int)x - 8, TOP + ph + 10, e, black, 0);
        double a = a0 + (a1 - a0) * k / 4.0;
        number(&c, LEFT + pw + 6, (int)YA(a) - 5, a, green, 0);
    }
#undef X
#undef YL
#undef YA
    text(&c, LEFT, 8, "loss", 2, blue);
    text(&c, LEFT + 48, 8, "test acc %", 2, green);
    text(&c, LEFT + pw / 2 - 20, H - 18, "epoch", 2, black);
    mae_status s = mae_png_write(path, c.px, W, H, 3, 0);
    free(c.px);
    return s == MAE_OK ? 0 : cli_fail(cmd, path, s);
}
