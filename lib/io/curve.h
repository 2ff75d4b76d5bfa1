/* Training curves: the points a run records, a CSV for programs and a PNG plot for people
 * (docs/cli.md). Both files are written atomically (lib/io/atomic_file.h).
 *
 * CSV: a header line `step,train_loss,val_loss,lr,seconds`, then one line per point; a value
 * that was not measured at that step (val_loss between validations) is an empty field. Numbers
 * are printed with the fewest digits that read back to the same double, so the file
 * round-trips exactly. */
#ifndef BL_CURVE_H
#define BL_CURVE_H

#include <stdint.h>

#include "lib/error.h"

typedef struct bl_curve_point {
    int64_t step;        /* optimizer steps done */
    double train_loss;   /* NaN: not measured */
    double val_loss;     /* NaN: not measured */
    double lr;
    double seconds;      /* wall time since the start of training (resumed runs continue it) */
} bl_curve_point;

typedef struct bl_curve {
    int64_t n, cap;
    bl_curve_point *points;
} bl_curve;

bl_curve *bl_curve_alloc(void);
void bl_curve_free(bl_curve *c);
void bl_curve_append(bl_curve *c, bl_curve_point p);
/* Drop points with step > max_step (resuming from a checkpoint taken at max_step). */
void bl_curve_truncate(bl_curve *c, int64_t max_step);

bl_status bl_curve_write_csv(const bl_curve *c, const char *path);
/* BL_ERR_IO if missing, BL_ERR_FORMAT naming path:line for a bad header or line. */
bl_status bl_curve_read_csv(bl_curve **out, const char *path);

/* PNG of train and validation loss against step, width x height pixels, drawn with PLplot's
 * pngcairo device. BL_ERR_IO if that device is missing (package plplot-driver-cairo) or the
 * file cannot be written; BL_ERR_ARG if the curve has no finite loss. Not thread-safe
 * (PLplot keeps global state): call from one thread. */
bl_status bl_curve_write_png(const bl_curve *c, const char *path, int width, int height,
                             const char *title);
/* The same, with a logarithmic loss axis when log_scale (non-positive losses are left out). */
bl_status bl_curve_write_png_log(const bl_curve *c, const char *path, int width, int height,
                                 const char *title, int log_scale);
/* The loss axis of those plots from the n values (NaN and inf ignored; on a log axis also the
 * values <= 0), padded by 5% (log: in decades). With 4 values or more, values above Tukey's
 * far-out fence Q3 + 3 IQR (of log10 values on a log axis) do not widen it: they are counted in
 * *n_above and drawn as triangles on the top edge, so one huge validation loss cannot squash
 * the curve. Returns 0 when no value qualifies. */
int bl_curve_y_range(const double *values, int64_t n, int log_scale, double *lo, double *hi, int64_t *n_above);

/* PNG of n_series curves y[k][0 .. n) against x[0 .. n), one small panel each (a grid of
 * about square shape, each panel panel_width x panel_height pixels, its own y range, titled
 * titles[k]); NaN values are gaps; a series with no finite value shows an empty panel. Used
 * for the per-epoch validation metrics of a training run (metrics.png). Errors as
 * bl_curve_write_png (BL_ERR_ARG also for n_series < 1). Not thread-safe. */
bl_status bl_curve_write_panels_png(const char *path, int n_series, const char *const *titles,
                                    int64_t n, const double *x, const double *const *y,
                                    int panel_width, int panel_height, const char *xlabel);

#endif
