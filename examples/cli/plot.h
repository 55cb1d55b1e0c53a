/* Loss curves as PNGs, drawn with nothing but the library's PNG writer. */
#ifndef MAE_CLI_PLOT_H
#define MAE_CLI_PLOT_H

/* loss[n] (log-scale axis, raw in grey and a moving average in blue) and lr[n] (orange, its own
 * linear scale) against the step, written atomically by mae_png_write. Returns 0, or 1 after the
 * error line "mae <cmd>: ..." (with the system's reason when the write fails). */
int cli_plot_loss(const char *cmd, const char *path, const float *loss, const float *lr, int n);

/* The fine-tuning curves: loss[n] at fractional epochs loss_x[n] (log-scale axis, raw in grey
 * and a moving average in blue) and the test accuracy acc[m] in percent at epochs acc_x[m]
 * (green, its own linear scale on the right), written as cli_plot_loss writes. */
int cli_plot_finetune(const char *cmd, const char *path, const float *loss_x, const float *loss, int n,
                      const float *acc_x, const float *acc, int m);

/* One run of `mae plot`: n points (x[i], loss[i], lr[i]) and its legend label. */
typedef struct cli_plot_run {
    const char *label;
    const float *x, *loss, *lr;
    int n;
} cli_plot_run;

enum { CLI_PLOT_MAX_RUNS = 8 };   /* one distinct colour each */

/* Several runs on one chart, written as cli_plot_loss writes: each run's loss (log-scale axis,
 * raw in a pale tint of its colour, the moving average over window points in its colour;
 * window 0: 1% of the run's points) and, with with_lr, its lr dashed on a linear scale on the
 * right; a legend of the labels; the x axis named xname, its tick labels rounded down when
 * whole_x (steps), the axis running to the largest x (whole_x) or the next whole number. */
int cli_plot_runs(const char *cmd, const char *path, const cli_plot_run *runs, int nruns,
                  const char *xname, int whole_x, int window, int with_lr);

#endif
