/* The loss plots of `mae train`, `mae finetune` and `mae plot`: axes, log-scale loss, lr or test
 * accuracy, and labels in a 3x5 pixel font. */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "plot.h"

enum { W = 800, H = 440, LEFT = 70, RIGHT = 70, TOP = 30, BOTTOM = 50 };
enum { PW = W - LEFT - RIGHT, PH = H - TOP - BOTTOM };   /* the plot area */

static const uint8_t black[3] = { 0, 0, 0 }, grey[3] = { 190, 190, 190 },
                     light[3] = { 232, 232, 232 }, white[3] = { 255, 255, 255 },
                     blue[3] = { 31, 90, 180 }, orange[3] = { 230, 120, 20 },
                     green[3] = { 20, 150, 60 };

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

/* line() drawn 6 pixels on, 4 off; *run carries the pattern from one segment of a polyline to
 * the next, so that a curve of many short segments is dashed along its length. */
static void dashed(canvas *c, double x0, double y0, double x1, double y1, const uint8_t rgb[3],
                   double *run)
{
    int steps = (int)ceil(fmax(fabs(x1 - x0), fabs(y1 - y0))) + 1;
    double len = hypot(x1 - x0, y1 - y0) / steps;
    for (int i = 0; i <= steps; i++, *run += len) {
        double t = (double)i / steps;
        if (fmod(*run, 10) < 6)
            dot(c, (int)lround(x0 + t * (x1 - x0)), (int)lround(y0 + t * (y1 - y0)), rgb);
    }
}

static void fill(canvas *c, int x0, int y0, int x1, int y1, const uint8_t rgb[3])
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            dot(c, x, y, rgb);
}

/* 3x5 glyphs, one row per 3 bits (top row first); upper case is drawn as lower case, other
 * characters as a blank. */
static int glyph(char ch)
{
    static const char *chars = "0123456789.-elostrpg +ach%bdfijkmnquvwxyz/_:(),=?";
    static const int rows[] = {
        0x7B6F, 0x2C97, 0x73E7, 0x73CF, 0x5BC9, 0x79CF, 0x79EF, 0x7249, 0x7BEF, 0x7BCF,
        0x0002, 0x01C0, 0x2BE3 /* e */, 0x6497 /* l */, 0x0F6F /* o */, 0x388E /* s */,
        0x2E93 /* t */, 0x0BA4 /* r */, 0x6BA4 /* p */, 0x3ACE /* g */, 0x0000, 0x05D0 /* + */,
        0x076B /* a */, 0x0723 /* c */, 0x49AD /* h */, 0x52A5 /* % */,
        0x49AE /* b */, 0x12EB /* d */, 0x35D2 /* f */, 0x2092 /* i */, 0x106A /* j */,
        0x4BB5 /* k */, 0x0FED /* m */, 0x0D6D /* n */, 0x0759 /* q */, 0x0B6B /* u */,
        0x0B6A /* v */, 0x0B7F /* w */, 0x0A95 /* x */, 0x5ACE /* y */, 0x0EF7 /* z */,
        0x12A4 /* / */, 0x0007 /* _ */, 0x0410 /* : */, 0x1491 /* ( */, 0x4494 /* ) */,
        0x0014 /* , */, 0x0E38 /* = */, 0x7282 /* ? */ };
    const char *p = ch ? strchr(chars, tolower((unsigned char)ch)) : NULL;
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

/* Where the data lands: x in [0, xmax] across the plot area (xs = PW / xmax pixels per unit),
 * the loss on the log10 axis [l0, l1] (quarter decades), whatever lies below it (zero,
 * negative, NaN) on its floor. */
typedef struct frame {
    double xmax, xs, l0, l1;
} frame;

static frame frame_new(double xmax)
{
    return (frame){ xmax, PW / xmax, 0, 0 };
}

static double frame_x(const frame *f, double x)
{
    return LEFT + x * f->xs;
}

static double frame_y(const frame *f, double loss)
{
    return TOP + PH * (f->l1 - log10(fmax(loss, pow(10, f->l0)))) / (f->l1 - f->l0);
}

/* Point i of a curve: at x[i], or at i without x values (one point per step). */
static double point_x(const frame *f, const float *x, int i)
{
    return frame_x(f, x ? (double)x[i] : (double)i);
}

/* The right-hand linear scales: the lr from 0 to lrmax, the accuracy from a0 to a1. */
static double lr_y(double lr, double lrmax)
{
    return TOP + PH * (1 - lr / lrmax);
}

static double acc_y(double acc, double a0, double a1)
{
    return TOP + PH * (a1 - acc) / (a1 - a0);
}

/* The range [*lo, *hi] widened to take in the positive finite values of v[n]. */
static void loss_range(const float *v, int n, double *lo, double *hi)
{
    for (int i = 0; i < n; i++)
        if (v[i] > 0 && isfinite(v[i])) {
            *lo = fmin(*lo, v[i]);
            *hi = fmax(*hi, v[i]);
        }
}

/* The log-scale axis of f (quarter decades around the loss range [lo, hi]; a tenfold one when
 * it is empty or a single value), with grid lines and their labels at 1, 2, 5 times powers of
 * ten. */
static void log_axis(canvas *c, double lo, double hi, frame *f)
{
    if (!(lo < hi)) {
        lo = lo > 0 && isfinite(lo) ? lo / 2 : 0.1;
        hi = lo * 4;
    }
    f->l0 = floor(log10(lo) * 4) / 4;
    f->l1 = ceil(log10(hi) * 4) / 4;
    for (int e = (int)floor(f->l0); e <= (int)ceil(f->l1); e++)
        for (int k = 0; k < 3; k++) {
            double g = (k == 0 ? 1 : k == 1 ? 2 : 5) * pow(10, e), lg = log10(g);
            if (lg < f->l0 || lg > f->l1)
                continue;
            double y = TOP + PH * (f->l1 - lg) / (f->l1 - f->l0);
            line(c, LEFT, y, LEFT + PW, y, light);
            number(c, LEFT - 6, (int)y - 5, g, black, 1);
        }
}

/* The loss as logged, point to point (x: as point_x). */
static void raw_curve(canvas *c, const frame *f, const float *x, const float *loss, int n,
                      const uint8_t rgb[3])
{
    for (int i = 1; i < n; i++)
        line(c, point_x(f, x, i - 1), frame_y(f, loss[i - 1]), point_x(f, x, i),
             frame_y(f, loss[i]), rgb);
}

/* The loss's moving average over win points (over the first i + 1 at point i < win): the
 * trend through the noise of single batches. */
static void smooth_curve(canvas *c, const frame *f, const float *x, const float *loss, int n,
                         int win, const uint8_t rgb[3])
{
    double sum = 0, prev_y = 0;
    for (int i = 0; i < n; i++) {
        sum += loss[i];
        if (i >= win)
            sum -= loss[i - win];
        double y = frame_y(f, sum / (i + 1 < win ? i + 1 : win));
        if (i > 0)
            line(c, point_x(f, x, i - 1), prev_y, point_x(f, x, i), y, rgb);
        prev_y = y;
    }
}

/* The lr, solid or dashed, on the right-hand scale [0, lrmax]. */
static void lr_curve(canvas *c, const frame *f, const float *x, const float *lr, int n,
                     double lrmax, const uint8_t rgb[3], int dash)
{
    double run = 0;
    for (int i = 1; i < n; i++) {
        double x0 = point_x(f, x, i - 1), y0 = lr_y(lr[i - 1], lrmax);
        double x1 = point_x(f, x, i), y1 = lr_y(lr[i], lrmax);
        if (dash)
            dashed(c, x0, y0, x1, y1, rgb, &run);
        else
            line(c, x0, y0, x1, y1, rgb);
    }
}

/* The frame of the plot area, and the x axis: 5 ticks labelled xmax * k / 4 (rounded down when
 * whole), its name centred below. */
static void box_and_x_axis(canvas *c, double xmax, int whole, const char *name)
{
    line(c, LEFT, TOP, LEFT, TOP + PH, black);
    line(c, LEFT, TOP + PH, LEFT + PW, TOP + PH, black);
    line(c, LEFT + PW, TOP, LEFT + PW, TOP + PH, black);
    for (int k = 0; k <= 4; k++) {
        double x = LEFT + PW * k / 4.0, v = xmax * k / 4.0;
        line(c, x, TOP + PH, x, TOP + PH + 5, black);
        number(c, (int)x - 8, TOP + PH + 10, whole ? floor(v) : v, black, 0);
    }
    text(c, LEFT + PW / 2 - 4 * (int)strlen(name), H - 18, name, 2, black);
}

static int canvas_open(const char *cmd, const char *path, canvas *c)
{
    c->px = malloc((size_t)W * H * 3);
    if (!c->px)
        return cli_errorf(cmd, "%s: out of memory for the plot", path);
    memset(c->px, 255, (size_t)W * H * 3);
    return 0;
}

/* Writes the canvas atomically (mae_png_write) and frees it. */
static int canvas_write(const char *cmd, const char *path, canvas *c)
{
    mae_status s = mae_png_write(path, c->px, W, H, 3, 0);
    free(c->px);
    c->px = NULL;
    return s == MAE_OK ? 0 : cli_fail(cmd, path, s);
}

int cli_plot_loss(const char *cmd, const char *path, const float *loss, const float *lr, int n)
{
    if (n < 1)
        return cli_errorf(cmd, "%s: no steps to plot", path);
    canvas c;
    if (canvas_open(cmd, path, &c))
        return 1;
    double lo = INFINITY, hi = -INFINITY, lrmax = 0;
    loss_range(loss, n, &lo, &hi);
    for (int i = 0; i < n; i++)
        lrmax = fmax(lrmax, lr[i]);
    frame f = frame_new(n > 1 ? n - 1 : 1);
    log_axis(&c, lo, hi, &f);
    raw_curve(&c, &f, NULL, loss, n, grey);
    smooth_curve(&c, &f, NULL, loss, n, n / 100 > 1 ? n / 100 : 1, blue);   /* 1% of the run */
    if (lrmax > 0)
        lr_curve(&c, &f, NULL, lr, n, lrmax, orange, 0);
    box_and_x_axis(&c, n - 1, 1, "step");
    number(&c, LEFT + PW + 6, TOP - 5, lrmax, orange, 0);
    number(&c, LEFT + PW + 6, TOP + PH - 5, 0, orange, 0);
    text(&c, LEFT, 8, "loss", 2, blue);
    text(&c, LEFT + 48, 8, "lr", 2, orange);
    return canvas_write(cmd, path, &c);
}

int cli_plot_finetune(const char *cmd, const char *path, const float *loss_x, const float *loss, int n,
                      const float *acc_x, const float *acc, int m)
{
    if (n < 1 && m < 1)
        return cli_errorf(cmd, "%s: nothing to plot", path);
    canvas c;
    if (canvas_open(cmd, path, &c))
        return 1;
    double xmax = 0;
    for (int i = 0; i < n; i++)
        xmax = fmax(xmax, loss_x[i]);
    for (int i = 0; i < m; i++)
        xmax = fmax(xmax, acc_x[i]);
    frame f = frame_new(xmax > 0 ? ceil(xmax) : 1);
    double lo = INFINITY, hi = -INFINITY;
    loss_range(loss, n, &lo, &hi);
    log_axis(&c, lo, hi, &f);
    raw_curve(&c, &f, loss_x, loss, n, grey);
    smooth_curve(&c, &f, loss_x, loss, n, n / 50 > 1 ? n / 50 : 1, blue);   /* 2% of the points */
    /* accuracy: its own linear scale on the right, whole multiples of 5 around the values */
    double a0 = 100, a1 = 0;
    for (int i = 0; i < m; i++) {
        a0 = fmin(a0, acc[i]);
        a1 = fmax(a1, acc[i]);
    }
    a0 = m ? fmax(0, floor((a0 - 1) / 5) * 5) : 0;
    a1 = m ? fmin(100, ceil((a1 + 1) / 5) * 5) : 100;
    for (int i = 0; i < m; i++) {
        double x = frame_x(&f, acc_x[i]), y = acc_y(acc[i], a0, a1);
        if (i > 0)
            line(&c, frame_x(&f, acc_x[i - 1]), acc_y(acc[i - 1], a0, a1), x, y, green);
        for (int d = -2; d <= 2; d++) {   /* a cross at each evaluation */
            dot(&c, (int)lround(x) + d, (int)lround(y), green);
            dot(&c, (int)lround(x), (int)lround(y) + d, green);
        }
    }
    box_and_x_axis(&c, f.xmax, 0, "epoch");
    for (int k = 0; k <= 4; k++) {
        double a = a0 + (a1 - a0) * k / 4.0;
        number(&c, LEFT + PW + 6, (int)acc_y(a, a0, a1) - 5, a, green, 0);
    }
    text(&c, LEFT, 8, "loss", 2, blue);
    text(&c, LEFT + 48, 8, "test acc %", 2, green);
    return canvas_write(cmd, path, &c);
}

/* The runs' colours, in order: the first is loss.png's blue. */
static const uint8_t palette[CLI_PLOT_MAX_RUNS][3] = {
    { 31, 90, 180 }, { 210, 50, 40 }, { 20, 150, 60 }, { 140, 60, 170 },
    { 150, 95, 30 }, { 0, 145, 150 }, { 220, 60, 150 }, { 90, 90, 90 },
};

/* The colour of a run's raw loss: its own, a quarter strength on white. */
static void tint(const uint8_t rgb[3], uint8_t out[3])
{
    for (int k = 0; k < 3; k++)
        out[k] = (uint8_t)(255 - (255 - rgb[k]) / 4);
}

enum { LEGEND_CHARS = 40 };   /* a longer label keeps its last characters, after ".." */

/* The legend in the plot area's top right corner (where falling loss curves are not): per run a
 * stroke of its colour and its label, on white. */
static void legend(canvas *c, const cli_plot_run *runs, int nruns)
{
    char label[CLI_PLOT_MAX_RUNS][LEGEND_CHARS + 1];
    int widest = 0;
    for (int r = 0; r < nruns; r++) {
        size_t len = strlen(runs[r].label);
        if (len > LEGEND_CHARS)
            snprintf(label[r], sizeof label[r], "..%s", runs[r].label + len - (LEGEND_CHARS - 2));
        else
            snprintf(label[r], sizeof label[r], "%s", runs[r].label);
        widest = (int)strlen(label[r]) > widest ? (int)strlen(label[r]) : widest;
    }
    int w = 8 + 24 + 8 + widest * 8 + 6, h = 6 + 16 * nruns;
    int x0 = LEFT + PW - 8 - w, y0 = TOP + 8;
    fill(c, x0, y0, x0 + w, y0 + h, white);
    line(c, x0, y0, x0 + w, y0, grey);
    line(c, x0, y0 + h, x0 + w, y0 + h, grey);
    line(c, x0, y0, x0, y0 + h, grey);
    line(c, x0 + w, y0, x0 + w, y0 + h, grey);
    for (int r = 0; r < nruns; r++) {
        int y = y0 + 6 + 16 * r;
        fill(c, x0 + 8, y + 4, x0 + 32, y + 6, palette[r]);
        text(c, x0 + 40, y, label[r], 2, black);
    }
}

int cli_plot_runs(const char *cmd, const char *path, const cli_plot_run *runs, int nruns,
                  const char *xname, int whole_x, int window, int with_lr)
{
    if (nruns < 1 || nruns > CLI_PLOT_MAX_RUNS)
        return cli_errorf(cmd, "%s: %d runs to plot (1 to %d)", path, nruns, CLI_PLOT_MAX_RUNS);
    canvas c;
    if (canvas_open(cmd, path, &c))
        return 1;
    double lo = INFINITY, hi = -INFINITY, xmax = 0, lrmax = 0;
    for (int r = 0; r < nruns; r++) {
        loss_range(runs[r].loss, runs[r].n, &lo, &hi);
        for (int i = 0; i < runs[r].n; i++) {
            xmax = fmax(xmax, runs[r].x[i]);
            lrmax = fmax(lrmax, runs[r].lr[i]);
        }
    }
    frame f = frame_new(xmax > 0 ? (whole_x ? xmax : ceil(xmax)) : 1);
    log_axis(&c, lo, hi, &f);
    /* every run's raw loss below every run's average, so that no run hides another's trend */
    for (int r = 0; r < nruns; r++) {
        uint8_t pale[3];
        tint(palette[r], pale);
        raw_curve(&c, &f, runs[r].x, runs[r].loss, runs[r].n, pale);
    }
    for (int r = 0; r < nruns; r++) {
        int n = runs[r].n, win = window > 0 ? window : n / 100 > 1 ? n / 100 : 1;
        smooth_curve(&c, &f, runs[r].x, runs[r].loss, n, win, palette[r]);
    }
    if (with_lr && lrmax > 0) {
        for (int r = 0; r < nruns; r++)
            lr_curve(&c, &f, runs[r].x, runs[r].lr, runs[r].n, lrmax, palette[r], 1);
        number(&c, LEFT + PW + 6, TOP - 5, lrmax, black, 0);
        number(&c, LEFT + PW + 6, TOP + PH - 5, 0, black, 0);
        const char *note = "lr: dashed, right axis";
        text(&c, W - 6 - 8 * (int)strlen(note), 8, note, 2, black);
    }
    box_and_x_axis(&c, f.xmax, whole_x, xname);
    legend(&c, runs, nruns);
    text(&c, LEFT, 8, "loss (log scale)", 2, black);
    return canvas_write(cmd, path, &c);
}
