/* Optimisers with PyTorch's semantics.
 *
 * Adam (torch.optim.Adam, amsgrad=False), per parameter p with gradient g at step t = 1, 2, ...:
 *   g += weight_decay * p                      (L2, as torch when weight_decay > 0)
 *   m = beta1 m + (1 - beta1) g ;  v = beta2 v + (1 - beta2) g^2
 *   p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)      -- eps outside the sqrt
 * A parameter without a gradient this step (has_grad 0: no backward pass reached it since the
 * last zero_grad, e.g. the checkerboard net when the checkerboard is off) is skipped entirely:
 * value, moments and its step count t stay as they are. t counts the steps the parameter took
 * part in, as torch keeps state['step'] per parameter and skips grad = None (torch's
 * zero_grad(set_to_none=True), the default since torch 2.0).
 * MultiStepLR: lr(epoch) = base_lr * gamma^(number of milestones <= epoch). */
#ifndef BL_OPTIM_H
#define BL_OPTIM_H

#include "autograd/params.h"

typedef struct bl_adam_opts {
    double lr, beta1, beta2, eps, weight_decay;
} bl_adam_opts;

/* torch defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0 */
bl_adam_opts bl_adam_defaults(void);

typedef struct bl_adam {
    bl_adam_opts opts;
    bl_params *params;   /* not owned */
    bl_real **m, **v;    /* first/second moments, one array per parameter (NULL for buffers) */
    int64_t *steps;      /* per parameter: the steps it was updated in (torch's state['step']) */
    int64_t step;        /* number of bl_adam_step calls */
} bl_adam;

bl_adam *bl_adam_alloc(bl_params *params, bl_adam_opts opts);
void bl_adam_free(bl_adam *adam);
/* One step over every parameter that requires a gradient and has one (has_grad), with
 * lr = opts.lr. */
void bl_adam_step(bl_adam *adam);

#define BL_MULTISTEP_MAX 16
typedef struct bl_multistep {
    double base_lr, gamma;
    int n_milestones;
    int milestones[BL_MULTISTEP_MAX];  /* ascending epochs */
} bl_multistep;

double bl_multistep_lr(const bl_multistep *s, int epoch);

#endif
