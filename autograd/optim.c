#include "autograd/optim.h"

#include <math.h>
#include <stdlib.h>

bl_adam_opts bl_adam_defaults(void)
{
    return (bl_adam_opts){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0};
}

bl_adam *bl_adam_alloc(bl_params *params, bl_adam_opts opts)
{
    bl_adam *a = bl_calloc(1, sizeof *a);
    a->opts = opts;
    a->params = params;
    a->m = bl_calloc((size_t)params->n + 1, sizeof *a->m);
    a->v = bl_calloc((size_t)params->n + 1, sizeof *a->v);
    a->steps = bl_calloc((size_t)params->n + 1, sizeof *a->steps);
    for (int i = 0; i < params->n; i++) {
        if (!params->t[i]->requires_grad) continue;
        a->m[i] = bl_calloc((size_t)params->t[i]->numel, sizeof(bl_real));
        a->v[i] = bl_calloc((size_t)params->t[i]->numel, sizeof(bl_real));
    }
    return a;
}

void bl_adam_free(bl_adam *a)
{
    if (!a) return;
    for (int i = 0; i < a->params->n; i++) {
        free(a->m[i]);
        free(a->v[i]);
    }
    free(a->m);
    free(a->v);
    free(a->steps);
    free(a);
}

void bl_adam_step(bl_adam *a)
{
    BL_ASSERT(a->params->n == 0 || a->m != NULL, "bl_adam_step: optimiser not initialised");
    a->step++;
    const double b1 = a->opts.beta1, b2 = a->opts.beta2, eps = a->opts.eps, wd = a->opts.weight_decay;
    for (int i = 0; i < a->params->n; i++) {
        bl_tensor *p = a->params->t[i];
        if (!p->requires_grad || !p->has_grad) continue;
        BL_ASSERT(a->m[i], "bl_adam_step: parameter '%s' was added after the optimiser was made",
                  p->name);
        const int64_t t = ++a->steps[i];
        const double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
        const double step_size = a->opts.lr / bc1, sqrt_bc2 = sqrt(bc2);
        bl_real *w = p->data, *g = p->grad, *m = a->m[i], *v = a->v[i];
        const int64_t n = p->numel;
#pragma omp parallel for if (n > 65536) schedule(static)
        for (int64_t k = 0; k < n; k++) {
            double gk = (double)g[k] + wd * (double)w[k];
            double mk = b1 * m[k] + (1 - b1) * gk;
            double vk = b2 * v[k] + (1 - b2) * gk * gk;
            m[k] = (bl_real)mk;
            v[k] = (bl_real)vk;
            /* torch: denom = sqrt(v)/sqrt(bc2) + eps; p -= (lr/bc1) * m / denom */
            w[k] = (bl_real)(w[k] - step_size * mk / (sqrt(vk) / sqrt_bc2 + eps));
        }
    }
}

double bl_multistep_lr(const bl_multistep *s, int epoch)
{
    double lr = s->base_lr;
    for (int i = 0; i < s->n_milestones; i++)
        if (epoch >= s->milestones[i]) lr *= s->gamma;
    return lr;
}
