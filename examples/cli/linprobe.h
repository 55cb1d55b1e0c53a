/* The pieces of the official linear probe (main_linprobe.py) that `mae probe --official` uses:
 * the frozen encoder's features (cls token, or global pooling), the head's BatchNorm1d without
 * affine, the LARS optimizer (util/lars.py) and the per-iteration warmup + cosine lr. Plain
 * functions of arrays, tested on their own (tests/test_linprobe.c). */
#ifndef MAE_CLI_LINPROBE_H
#define MAE_CLI_LINPROBE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "mae.h"

/* torch.nn.BatchNorm1d(F, affine=False, eps, momentum): running mean 0 and var 1 at the start. */
typedef struct lp_batchnorm {
    int F;
    double eps, momentum;
    double *mean, *var;    /* running statistics [F] */
    long long batches;     /* num_batches_tracked */
} lp_batchnorm;

/* 0, or -1 when out of memory. */
int  lp_bn_init(lp_batchnorm *bn, int F, double eps, double momentum);
void lp_bn_free(lp_batchnorm *bn);
/* Training mode, x [b, F] -> y [b, F] (b >= 2, as torch requires): normalized with the batch's
 * mean and biased variance; the running statistics move by momentum toward the batch mean and
 * the unbiased variance (b / (b - 1) times the biased one). */
void lp_bn_train(lp_batchnorm *bn, const float *x, int b, float *y);
/* Eval mode: normalized with the running statistics. */
void lp_bn_eval(const lp_batchnorm *bn, const float *x, int b, float *y);

/* One LARS step on a tensor of n floats (p parameters, g gradient, mu momentum buffer, zero at
 * the start). adapt (the official "p.ndim > 1"): d = g + wd * p, scaled by the trust ratio
 * trust * |p| / |d| (1 when either norm is 0); 1-D tensors (adapt 0) take g as it is, without
 * weight decay. Then mu = momentum * mu + d and p -= lr * mu. */
void lp_lars_step(float *p, const float *g, float *mu, size_t n, int adapt, double lr, double wd,
                  double momentum, double trust);

/* util/lr_sched.adjust_learning_rate at fractional epoch e: linear warmup from 0 over warmup
 * epochs, then half a cosine from lr down to min_lr at epochs. */
double lp_lr_at(double e, double lr, double min_lr, double warmup, double epochs);

/* The frozen encoder's features out [n, D] of images [n, C, H, W] (normalized, the model's
 * size), as models_vit.VisionTransformer gives them to the probe's head: global_pool 0, the cls
 * token after the final norm; 1, the mean of the patch tokens before the final norm, through a
 * fresh LayerNorm (weight 1, bias 0, eps 1e-6; frozen at that in the official probe). threads 0:
 * the library's default. MAE_OK, or the failing call's status (mae_last_error has the detail). */
mae_status lp_features(const mae_model *m, int global_pool, int threads, const float *imgs, int n,
                       float *out);

/* The probe's training (probe_official.c): head = BatchNorm1d(F, affine=False, eps 1e-6,
 * momentum 0.1) then Linear(F -> classes) (weight normal with std 0.01, bias 0), trained with
 * LARS (momentum 0.9, trust 0.001, weight decay wd on the weight only) on the cross-entropy
 * (mean over the batch, no smoothing), lr from lp_lr_at per iteration (min_lr 0); every epoch a
 * fresh shuffle, the last partial batch dropped (drop_last, as the official loader). */
typedef struct lp_fit_opts {
    int epochs, batch, classes;
    uint64_t seed;         /* head init and data order */
    double lr, wd, warmup; /* lr: the peak (blr * batch / 256 or the given one) */
    FILE *progress;        /* a line every tenth of the run, or NULL */
} lp_fit_opts;

typedef struct lp_fit_result {
    double loss;           /* mean training loss of the last epoch */
    double train_acc, test_acc;   /* percent, the BatchNorm in eval mode */
} lp_fit_result;

/* ftr [ntr, F], ytr [ntr] (labels < classes) and the test set likewise. 0; -1 out of memory;
 * -2 fewer training rows than one batch (or batch < 2); -3 the loss stopped being finite. */
int lp_fit(const lp_fit_opts *o, const float *ftr, const uint8_t *ytr, int ntr, const float *fte,
           const uint8_t *yte, int nte, int F, lp_fit_result *res);

#endif
