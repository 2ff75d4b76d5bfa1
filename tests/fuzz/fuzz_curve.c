/* training-curve CSV reader (resume): any file -> a curve or an error. */
#include <math.h>

#include "lib/io/curve.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bl_curve *c;
    if (bl_curve_read_csv(&c, bl_fuzz_file("curve.csv", data, size)) == BL_OK) {
        for (int64_t i = 0; i < c->n; i++)
            if (c->points[i].step < 0) abort();
        /* what resume does with it */
        bl_curve_truncate(c, c->n ? c->points[c->n / 2].step : 0);
        bl_curve_free(c);
    }
    return 0;
}
