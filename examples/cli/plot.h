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

#endif
