#include "autograd/params.h"

#include <stdlib.h>
#include <string.h>

bl_params *bl_params_alloc(void) { return bl_calloc(1, sizeof(bl_params)); }

void bl_params_free(bl_params *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) bl_tensor_free(p->t[i]);
    free(p->t);
    free(p);
}

bl_tensor *bl_params_find(const bl_params *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (p->t[i]->name && strcmp(p->t[i]->name, name) == 0) return p->t[i];
    return NULL;
}

bl_tensor *bl_params_add(bl_params *p, const char *name, int ndim, const int64_t *shape,
                         int requires_grad)
{
    BL_ASSERT(name && *name, "bl_params_add: every parameter needs a name");
    BL_ASSERT(!bl_params_find(p, name), "bl_params_add: duplicate parameter name '%s'", name);
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->t = bl_realloc(p->t, (size_t)p->cap * sizeof *p->t);
    }
    return p->t[p->n++] = bl_tensor_alloc(name, ndim, shape, requires_grad);
}

void bl_params_zero_grad(bl_params *p)
{
    for (int i = 0; i < p->n; i++) bl_tensor_zero_grad(p->t[i]);
}

int64_t bl_params_count_trainable(const bl_params *p)
{
    int64_t n = 0;
    for (int i = 0; i < p->n; i++)
        if (p->t[i]->requires_grad) n += p->t[i]->numel;
    return n;
}
