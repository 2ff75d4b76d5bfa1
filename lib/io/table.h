/* A table of numbers with named columns, kept as CSV (the per-epoch validation metrics of a
 * training run, metrics.csv; docs/cli.md). The first column is the optimizer step, a whole
 * number; the others are doubles, NaN written as the empty field. Numbers are printed with
 * the fewest digits that read back to the same double, so a file round-trips exactly; files
 * are written atomically (lib/io/atomic_file.h). */
#ifndef BL_TABLE_H
#define BL_TABLE_H

#include <stdint.h>

#include "lib/error.h"

typedef struct bl_table {
    int n_cols;
    char **cols;          /* names; cols[0] is "step" by convention of the caller */
    int64_t n_rows, cap;
    double *v;            /* n_rows x n_cols, row-major */
} bl_table;

/* A table with n_cols columns named names[0 .. n_cols) (copied). */
bl_table *bl_table_alloc(int n_cols, const char *const *names);
void bl_table_free(bl_table *t);
/* Append one row of n_cols values. */
void bl_table_append(bl_table *t, const double *row);
/* Drop the rows whose column 0 exceeds max (resuming from a checkpoint at step max). */
void bl_table_truncate(bl_table *t, double max);
/* Header line of the names joined by commas, then a line per row. */
bl_status bl_table_write_csv(const bl_table *t, const char *path);
/* Read a file written by bl_table_write_csv. BL_ERR_IO if it cannot be opened; BL_ERR_FORMAT
 * naming path:line for an empty file, a row of another width or a field that is not a number. */
bl_status bl_table_read_csv(bl_table **out, const char *path);
/* Column index of `name`, -1 if absent. */
int bl_table_col(const bl_table *t, const char *name);

#endif
