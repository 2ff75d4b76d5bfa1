/* Checkpoint loading (weights + Adam state) in two modes, chosen by the first byte:
 *   odd:  the rest is a whole file (any bytes);
 *   even: the rest is a list of 4-byte structured edits (op, tensor, a, b) applied to a valid
 *         checkpoint of a small parameter set: a special value in an element, another dtype,
 *         another shape, a tensor removed or renamed, a metadata value replaced.
 * Either way the result is written, loaded with and without the optimizer, and a successful
 * load must leave every weight finite. */
#include <math.h>

#include "models/checkpoint.h"
#include "tests/fuzz/fuzz_params.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void bl_fuzz_retype(bl_st_tensor *t, bl_dtype to)
{
    void *d = malloc((size_t)(t->numel ? t->numel : 1) * bl_dtype_size(to));
    if (!d) abort();
    for (int64_t i = 0; i < t->numel; i++) {
        double v = t->dtype == BL_DTYPE_F32 ? ((float *)t->data)[i]
                 : t->dtype == BL_DTYPE_F64 ? ((double *)t->data)[i]
                 : t->dtype == BL_DTYPE_I32 ? ((int32_t *)t->data)[i]
                                            : (double)((int64_t *)t->data)[i];
        switch (to) {
        case BL_DTYPE_F32: ((float *)d)[i] = (float)v; break;
        case BL_DTYPE_F64: ((double *)d)[i] = v; break;
        case BL_DTYPE_I32: ((int32_t *)d)[i] = isfinite(v) && fabs(v) < 2e9 ? (int32_t)v : 0; break;
        case BL_DTYPE_I64: ((int64_t *)d)[i] = isfinite(v) && fabs(v) < 9e18 ? (int64_t)v : 0; break;
        }
    }
    free(t->data);
    t->data = d;
    t->dtype = to;
}

static void bl_fuzz_edit(bl_safetensors *st, const uint8_t e[4])
{
    static const double special[8] = {NAN, INFINITY, -INFINITY, 1e300, -1e300, 0.0, -0.0, 3.5e38};
    static const int64_t dims[8] = {0, 1, 2, 3, 7, 1 << 20, (int64_t)1 << 40, 54};
    static const char *const names[6] = {"net.conv.weight", "net.conv.bias", "net.extra",
                                         "optimizer.state.net.conv.bias.exp_avg", "x", "net.bn.running_var"};
    static const char *const keys[3] = {"adam.step", "format", "train.step"};
    static const char *const values[8] = {"-1", "1e99", "abc", "", "9223372036854775808", "0", "5", " 3"};
    if (st->n == 0) return;
    bl_st_tensor *t = &st->tensors[e[1] % st->n];
    switch (e[0] % 6) {
    case 0: /* a special value in one element */
        if (t->numel == 0) break;
        bl_fuzz_retype(t, BL_DTYPE_F64);
        ((double *)t->data)[(e[2] * 256 + e[3]) % t->numel] = special[e[3] % 8];
        break;
    case 1:
        bl_fuzz_retype(t, (bl_dtype)(e[2] % 4) == BL_DTYPE_F32 ? BL_DTYPE_F32 : (bl_dtype)(e[2] % 4));
        break;
    case 2: { /* another shape, fresh data (small tensors only) */
        if (t->ndim == 0) break;
        int64_t shape[BL_ST_MAX_DIMS], numel = 1;
        memcpy(shape, t->shape, sizeof shape);
        shape[e[2] % t->ndim] = dims[e[3] % 8];
        for (int d = 0; d < t->ndim; d++) numel = shape[d] && numel > (1 << 16) / shape[d] ? (1 << 17) : numel * shape[d];
        if (numel > (1 << 16)) break;
        void *d = calloc((size_t)(numel ? numel : 1), bl_dtype_size(t->dtype));
        if (!d) abort();
        free(t->data);
        t->data = d;
        memcpy(t->shape, shape, sizeof shape);
        t->numel = numel;
        break;
    }
    case 3: /* removed */
        free(t->name);
        free(t->data);
        memmove(t, t + 1, (size_t)(st->n - 1 - (t - st->tensors)) * sizeof *t);
        st->n--;
        break;
    case 4: /* renamed (never to a name in use) */
        if (!bl_safetensors_find(st, names[e[2] % 6])) {
            free(t->name);
            t->name = strdup(names[e[2] % 6]);
        }
        break;
    case 5:
        bl_safetensors_set_meta(st, keys[e[2] % 3], values[e[3] % 8]);
        break;
    }
}

static void bl_fuzz_load(const char *path, bl_params *params, bl_adam *adam)
{
    if (bl_checkpoint_load(path, params, adam, NULL) != BL_OK) return;
    for (int i = 0; i < params->n; i++)
        for (int64_t j = 0; j < params->t[i]->numel; j++)
            if (!isfinite(params->t[i]->data[j])) { /* a loaded weight is finite */
                fprintf(stderr, "loaded %s[%lld] = %g\n", params->t[i]->name, (long long)j,
                        (double)params->t[i]->data[j]);
                abort();
            }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    bl_params *params = bl_fuzz_params();
    bl_adam *adam = bl_adam_alloc(params, bl_adam_defaults());
    const char *path;
    if (data[0] & 1) {
        path = bl_fuzz_file("ckpt.safetensors", data + 1, size - 1);
    } else {
        bl_safetensors *st = bl_checkpoint_pack(params, adam);
        for (size_t k = 1; k + 4 <= size && k < 1 + 4 * 32; k += 4) bl_fuzz_edit(st, data + k);
        static char p[256];
        snprintf(p, sizeof p, "%s/ckpt.safetensors", bl_fuzz_dir());
        path = p;
        if (bl_safetensors_write(st, path) != BL_OK) abort(); /* our own writer on a consistent set */
        bl_safetensors_free(st);
    }
    bl_fuzz_load(path, params, adam);
    bl_fuzz_load(path, params, NULL);
    bl_adam_free(adam);
    bl_params_free(params);
    return 0;
}
