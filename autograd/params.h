/* Named persistent tensors of a model: parameters (requires_grad) and buffers (BatchNorm
 * running statistics, counters), each under its PyTorch state_dict name, in registration
 * order. The set owns its tensors. */
#ifndef BL_PARAMS_H
#define BL_PARAMS_H

#include "lib/tensor.h"

typedef struct bl_params {
    bl_tensor **t;
    int n, cap;
} bl_params;

bl_params *bl_params_alloc(void);
void bl_params_free(bl_params *p);
/* Add a zero-filled tensor; a duplicate name is a programmer error. Returns the tensor. */
bl_tensor *bl_params_add(bl_params *p, const char *name, int ndim, const int64_t *shape,
                         int requires_grad);
bl_tensor *bl_params_find(const bl_params *p, const char *name);
void bl_params_zero_grad(bl_params *p);
/* Number of scalars in tensors that require a gradient (the "trainable parameter count"). */
int64_t bl_params_count_trainable(const bl_params *p);

#endif
