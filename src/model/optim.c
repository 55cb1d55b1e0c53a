/* AdamW and the learning-rate schedule of the official pretraining recipe (main_pretrain.py,
 * util/lr_sched.py, torch.optim.AdamW), and the global gradient norm. */
#include <math.h>
#include <string.h>
#include "model.h"

/* Elements per task of the optimizer loops; fixed, so the partial sums of the gradient norm and
 * thus its value do not depend on the thread count. */
#define CHUNK MAE_TRAIN_CHUNK
#define PI 3.14159265358979323846   /* math.pi */

/* lr = blr * eff_batch / 256 unless an absolute lr is given (main_pretrain.py's order of
 * operations, in double as Python does). */
double mae_train_peak_lr(const mae_train_config *c, int max_batch)
{
    if (c->lr > 0.0)
        return c->lr;
    double bs = c->batch_size > 0 ? c->batch_size : max_batch;
    double eff = bs * c->accum_iter * c->world_size;
    return c->blr * eff / 256;
}

/* util/lr_sched.adjust_learning_rate at data iteration step * accum_iter. */
double mae_train_lr_at(const mae_train_config *c, int max_batch, int64_t step)
{
    double peak = mae_train_peak_lr(c, max_batch);
    if (c->iters_per_epoch <= 0)
        return peak;
    int64_t it = step * c->accum_iter;
    double epoch = (double)(it / c->iters_per_epoch) + (double)(it % c->iters_per_epoch) / c->iters_per_epoch;
    if (epoch < c->warmup_epochs)
        return peak * epoch / c->warmup_epochs;
    return c->min_lr + (peak - c->min_lr) * 0.5 *
           (1.0 + cos(PI * (epoch - c->warmup_epochs) / (c->epochs - c->warmup_epochs)));
}

/* A tensor's slice of one chunk of the flat buffer, or 0 if they do not overlap. */
static int chunk_slice(const mae_tensor *tn, int task, size_t *lo, size_t *hi)
{
    size_t c0 = (size_t)task * CHUNK, c1 = c0 + CHUNK;
    size_t a = tn->offset > c0 ? tn->offset : c0;
    size_t b = tn->offset + tn->count < c1 ? tn->offset + tn->count : c1;
    if (a >= b)
        return 0;
    *lo = a;
    *hi = b;
    return 1;
}

static int num_chunks(const mae_trainer *t)
{
    return (int)((t->m->lay.total + CHUNK - 1) / CHUNK);
}

static void norm_task(void *p, int task, int thread)
{
    mae_trainer *t = p;
    if (mae_measure_mode) {
        mae_task_work(thread, 2.0 * CHUNK, CHUNK);
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
    /* four running sums (element j into sum j % 4 of its slice), so that the additions do not
     * wait for each other; the order is fixed, so the value does not depend on the threads */
    double s[4] = { 0.0, 0.0, 0.0, 0.0 };
    const float *g = t->grads;
    for (int i = 0; i < t->m->n_tensors; i++) {
        const mae_tensor *tn = &t->m->tensors[i];
        size_t lo, hi, j;
        if (!(t->tflags[i] & MAE_T_TRAIN) || !chunk_slice(tn, task, &lo, &hi))
            continue;
        for (j = lo; j + 4 <= hi; j += 4)
            for (int q = 0; q < 4; q++)
                s[q] += (double)g[j + q] * g[j + q];
        for (; j < hi; j++)
            s[(j - lo) & 3] += (double)g[j] * g[j];
    }
    t->norm_parts[task] = (s[0] + s[1]) + (s[2] + s[3]);
}

double mae_train_grad_norm(mae_trainer *t)
{
    int n = num_chunks(t);
    mae_parallel_for_op(&t->ex, "grad_norm", n, norm_task, t);
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += t->norm_parts[i];
    return sqrt(s);
}

typedef struct adamw_args {
    mae_trainer *t;
    mae_adamw_hp decay_on, decay_off;   /* the two parameter groups */
} adamw_args;

/* torch.optim.AdamW (single-tensor path) on this chunk's slice of every trainable tensor: one
 * pass over parameters, gradients and both moments, through the table's vectorized kernel
 * (bitwise the scalar reference, see mae_kernels.adamw). */
static void adamw_task(void *p, int task, int thread)
{
    const adamw_args *a = p;
    mae_trainer *t = a->t;
    const mae_kernels *k = t->m->k;
    if (mae_measure_mode) {
        mae_task_work(thread, 20.0 * CHUNK, 4.0 * CHUNK);
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
    float *w = t->m->data, *m1 = t->exp_avg, *m2 = t->exp_avg_sq, *g = t->grads;
    for (int i = 0; i < t->m->n_tensors; i++) {
        const mae_tensor *tn = &t->m->tensors[i];
        size_t lo, hi;
        if (!(t->tflags[i] & MAE_T_TRAIN) || !chunk_slice(tn, task, &lo, &hi))
            continue;
        const mae_adamw_hp *h = t->tflags[i] & MAE_T_DECAY ? &a->decay_on : &a->decay_off;
        k->adamw(w + lo, m1 + lo, m2 + lo, g + lo, hi - lo, h);
    }
}

void mae_train_adamw(mae_trainer *t, double lr, double grad_mul)
{
    const mae_train_config *c = &t->cfg;
    double n = (double)(t->step + 1);
    mae_adamw_hp h = { grad_mul, 1.0 - c->beta1, c->beta2, 1.0 - c->beta2, 1.0,
                       lr / (1.0 - pow(c->beta1, n)), sqrt(1.0 - pow(c->beta2, n)), c->eps };
    adamw_args a = { t, h, h };
    a.decay_on.decay = 1.0 - lr * c->weight_decay;
    mae_parallel_for_op(&t->ex, "adamw", num_chunks(t), adamw_task, &a);
}
