#include "lib/io/table.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/atomic_file.h"

bl_table *bl_table_alloc(int n_cols, const char *const *names)
{
    BL_ASSERT(n_cols > 0, "bl_table_alloc: %d columns", n_cols);
    bl_table *t = bl_calloc(1, sizeof *t);
    t->n_cols = n_cols;
    t->cols = bl_malloc((size_t)n_cols * sizeof *t->cols);
    for (int i = 0; i < n_cols; i++) {
        BL_ASSERT(names[i] && names[i][0] && !strchr(names[i], ',') && !strchr(names[i], '\n'),
                  "bl_table_alloc: column %d name '%s' is empty or holds a comma / newline", i,
                  names[i] ? names[i] : "(null)");
        t->cols[i] = bl_strdup(names[i]);
    }
    return t;
}

void bl_table_free(bl_table *t)
{
    if (!t) return;
    for (int i = 0; i < t->n_cols; i++) free(t->cols[i]);
    free(t->cols);
    free(t->v);
    free(t);
}

void bl_table_append(bl_table *t, const double *row)
{
    if (t->n_rows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->v = bl_realloc(t->v, (size_t)(t->cap * t->n_cols) * sizeof *t->v);
    }
    memcpy(t->v + t->n_rows * t->n_cols, row, (size_t)t->n_cols * sizeof *row);
    t->n_rows++;
}

void bl_table_truncate(bl_table *t, double max)
{
    int64_t k = 0;
    for (int64_t i = 0; i < t->n_rows; i++)
        if (t->v[i * t->n_cols] <= max) {
            if (k != i) memmove(t->v + k * t->n_cols, t->v + i * t->n_cols, (size_t)t->n_cols * sizeof *t->v);
            k++;
        }
    t->n_rows = k;
}

int bl_table_col(const bl_table *t, const char *name)
{
    for (int i = 0; i < t->n_cols; i++)
        if (strcmp(t->cols[i], name) == 0) return i;
    return -1;
}

/* shortest %g form that strtod reads back as exactly v; NaN as the empty field */
static void bl_table_fmt(char *buf, size_t n, double v)
{
    buf[0] = 0;
    if (isnan(v)) return;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

bl_status bl_table_write_csv(const bl_table *t, const char *path)
{
    bl_atomic_file af;
    bl_status st = bl_atomic_open(&af, path, "w");
    if (st) return st;
    for (int i = 0; i < t->n_cols; i++) fprintf(af.f, i ? ",%s" : "%s", t->cols[i]);
    fputc('\n', af.f);
    char buf[40];
    for (int64_t r = 0; r < t->n_rows; r++) {
        for (int i = 0; i < t->n_cols; i++) {
            bl_table_fmt(buf, sizeof buf, t->v[r * t->n_cols + i]);
            fprintf(af.f, i ? ",%s" : "%s", buf);
        }
        fputc('\n', af.f);
    }
    return bl_atomic_commit(&af);
}

/* the next line of f, without its newline, malloc'd (NULL at the end) */
static char *bl_read_line(FILE *f)
{
    size_t cap = 256, len = 0;
    char *s = bl_malloc(cap);
    int c;
    while ((c = fgetc(f)) != EOF && c != '\n') {
        if (len + 1 >= cap) s = bl_realloc(s, cap *= 2);
        s[len++] = (char)c;
    }
    if (c == EOF && len == 0) {
        free(s);
        return NULL;
    }
    while (len && s[len - 1] == '\r') len--;
    s[len] = 0;
    return s;
}

/* split s at commas in place; returns the field count (at most max) or max + 1 if more */
static int bl_split_commas(char *s, char **fields, int max)
{
    int n = 0;
    for (char *p = s;;) {
        if (n == max) return max + 1;
        fields[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma) return n;
        *comma = 0;
        p = comma + 1;
    }
}

bl_status bl_table_read_csv(bl_table **out, const char *path)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) return bl_error(BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *line = bl_read_line(f);
    if (!line || !line[0]) {
        free(line);
        fclose(f);
        return bl_error(BL_ERR_FORMAT, "%s: empty file (no header)", path);
    }
    int n = 1;
    for (const char *p = line; *p; p++) n += *p == ',';
    char **names = bl_malloc((size_t)n * sizeof *names);
    bl_split_commas(line, names, n);
    bl_status st = BL_OK;
    for (int i = 0; i < n && !st; i++)
        if (!names[i][0]) st = bl_error(BL_ERR_FORMAT, "%s:1: column %d of the header has no name", path, i + 1);
    bl_table *t = st ? NULL : bl_table_alloc(n, (const char *const *)names);
    free(names);
    free(line);
    double *row = bl_malloc((size_t)n * sizeof *row);
    char **fields = bl_malloc((size_t)(n + 1) * sizeof *fields);
    for (int lineno = 2; !st && (line = bl_read_line(f)); lineno++) {
        if (line[0]) {
            int nf = bl_split_commas(line, fields, n);
            if (nf != n) st = bl_error(BL_ERR_FORMAT, "%s:%d: expected %d comma-separated fields", path, lineno, n);
            for (int i = 0; i < n && !st; i++) {
                char *end;
                errno = 0;
                row[i] = fields[i][0] ? strtod(fields[i], &end) : NAN;
                if (fields[i][0] && (*end || errno == ERANGE))
                    st = bl_error(BL_ERR_FORMAT, "%s:%d: field %d ('%s') is not a number", path, lineno,
                                  i + 1, fields[i]);
            }
            if (!st && !(row[0] >= 0 && row[0] <= 9007199254740992.0 && row[0] == floor(row[0])))
                st = bl_error(BL_ERR_FORMAT, "%s:%d: the step '%s' is not a whole number", path, lineno, fields[0]);
            if (!st) bl_table_append(t, row);
        }
        free(line);
    }
    if (!st && ferror(f)) st = bl_error(BL_ERR_IO, "%s: read error", path);
    fclose(f);
    free(row);
    free(fields);
    if (st) {
        bl_table_free(t);
        return st;
    }
    *out = t;
    return BL_OK;
}
