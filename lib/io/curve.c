#include "lib/io/curve.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <plplot.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/io/atomic_file.h"
#include "lib/io/plplot_png.h"

static const char bl_curve_header[] = "step,train_loss,val_loss,lr,seconds";
/* the largest step a curve file may hold: every integer up to 2^53 is exact in a double */
#define BL_CURVE_MAX_STEP 9007199254740992.0

bl_curve *bl_curve_alloc(void) { return bl_calloc(1, sizeof(bl_curve)); }

void bl_curve_free(bl_curve *c)
{
    if (!c) return;
    free(c->points);
    free(c);
}

void bl_curve_append(bl_curve *c, bl_curve_point p)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->points = bl_realloc(c->points, (size_t)c->cap * sizeof *c->points);
    }
    c->points[c->n++] = p;
}

void bl_curve_truncate(bl_curve *c, int64_t max_step)
{
    int64_t k = 0;
    for (int64_t i = 0; i < c->n; i++)
        if (c->points[i].step <= max_step) c->points[k++] = c->points[i];
    c->n = k;
}

/* shortest %g form that strtod reads back as exactly v; NaN as the empty field */
static void bl_fmt_exact(char *buf, size_t n, double v)
{
    if (isnan(v)) {
        buf[0] = 0;
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

bl_status bl_curve_write_csv(const bl_curve *c, const char *path)
{
    bl_atomic_file af;
    bl_status st = bl_atomic_open(&af, path, "w");
    if (st) return st;
    fprintf(af.f, "%s\n", bl_curve_header);
    char v[4][40];
    for (int64_t i = 0; i < c->n; i++) {
        const bl_curve_point *p = &c->points[i];
        bl_fmt_exact(v[0], sizeof v[0], p->train_loss);
        bl_fmt_exact(v[1], sizeof v[1], p->val_loss);
        bl_fmt_exact(v[2], sizeof v[2], p->lr);
        bl_fmt_exact(v[3], sizeof v[3], p->seconds);
        fprintf(af.f, "%lld,%s,%s,%s,%s\n", (long long)p->step, v[0], v[1], v[2], v[3]);
    }
    return bl_atomic_commit(&af);
}

/* one CSV number: empty -> NaN; anything but a whole number is an error */
static int bl_parse_field(const char *s, double *v)
{
    if (!*s) {
        *v = NAN;
        return 1;
    }
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && *end == 0 && errno != ERANGE;
}

bl_status bl_curve_read_csv(bl_curve **out, const char *path)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) return bl_error(BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    bl_curve *c = bl_curve_alloc();
    char line[1024];
    bl_status st = BL_OK;
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            st = bl_error(BL_ERR_FORMAT, "%s:%d: line too long", path, lineno);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (lineno == 1) {
            if (strcmp(line, bl_curve_header) != 0) {
                st = bl_error(BL_ERR_FORMAT, "%s:1: expected header '%s', found '%s'", path,
                              bl_curve_header, line);
                break;
            }
            continue;
        }
        if (len == 0) continue;
        char *fields[5];
        int nf = 0;
        for (char *p = line; nf < 5;) {
            fields[nf++] = p;
            char *comma = strchr(p, ',');
            if (!comma) break;
            *comma = 0;
            p = comma + 1;
        }
        double v[5];
        int ok = nf == 5;
        for (int k = 0; ok && k < 5; k++) ok = bl_parse_field(fields[k], &v[k]);
        /* the step is range-checked as a double before its conversion */
        if (!ok || !(v[0] >= 0 && v[0] <= BL_CURVE_MAX_STEP) || v[0] != floor(v[0])) {
            st = bl_error(BL_ERR_FORMAT, "%s:%d: expected 5 comma-separated numbers (step,train_loss,val_loss,lr,seconds)",
                          path, lineno);
            break;
        }
        bl_curve_append(c, (bl_curve_point){(int64_t)v[0], v[1], v[2], v[3], v[4]});
    }
    if (st == BL_OK && lineno == 0) st = bl_error(BL_ERR_FORMAT, "%s: empty file (no header)", path);
    if (st == BL_OK && ferror(f)) st = bl_error(BL_ERR_IO, "%s: read error", path);
    fclose(f);
    if (st != BL_OK) {
        bl_curve_free(c);
        return st;
    }
    *out = c;
    return BL_OK;
}

int bl_plplot_has_device(const char *name)
{
    const char **menu, **devs;
    int n = 64;
    menu = bl_malloc((size_t)n * sizeof *menu);
    devs = bl_malloc((size_t)n * sizeof *devs);
    plgDevs(&menu, &devs, &n);
    int found = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(devs[i], name)) found = 1;
    free(menu);
    free(devs);
    return found;
}

/* PLplot writes the PNG through its own stdio calls, whose errors it ignores: a full disk shows
 * as a truncated file. 1 if `path` is a whole PNG: the signature, then chunks (length, type,
 * data, CRC) up to an IEND that ends the file. */
int bl_png_is_complete(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char head[8];
    int ok = fread(head, 1, 8, f) == 8 && memcmp(head, sig, 8) == 0, iend = 0;
    while (ok && !iend) {
        unsigned char h[8];
        if (fread(h, 1, 8, f) != 8) {
            ok = 0;
            break;
        }
        uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        iend = memcmp(h + 4, "IEND", 4) == 0;
        ok = len <= 0x7fffffffu && fseeko(f, (off_t)len + 4, SEEK_CUR) == 0;
    }
    if (ok) { /* fseeko past the end succeeds: the IEND chunk's CRC must be the last 4 bytes */
        off_t at = ftello(f);
        ok = fseeko(f, 0, SEEK_END) == 0 && ftello(f) == at;
    }
    fclose(f);
    return ok;
}

static int bl_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* value at quantile q of sorted v[0..n) (linear interpolation) */
static double bl_quantile(const double *v, int64_t n, double q)
{
    double at = q * (double)(n - 1);
    int64_t i = (int64_t)floor(at);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (at - (double)i) * (v[i + 1] - v[i]);
}

int bl_curve_y_range(const double *values, int64_t n, int log_scale, double *lo, double *hi, int64_t *n_above)
{
    double *v = bl_malloc(((size_t)n + 1) * sizeof *v);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(values[i]) && (!log_scale || values[i] > 0)) v[m++] = log_scale ? log10(values[i]) : values[i];
    *n_above = 0;
    if (m == 0) {
        free(v);
        return 0;
    }
    qsort(v, (size_t)m, sizeof *v, bl_cmp_double);
    double a = v[0], b = v[m - 1];
    if (m >= 4) { /* Tukey's far-out fence: a lone huge value does not set the axis */
        double q1 = bl_quantile(v, m, 0.25), q3 = bl_quantile(v, m, 0.75);
        double fence = q3 + 3 * fmax(q3 - q1, 1e-12 * fmax(fabs(q3), 1.0));
        if (b > fence) {
            b = a;
            for (int64_t i = 0; i < m; i++)
                if (v[i] <= fence) b = v[i];
                else (*n_above)++;
        }
    }
    free(v);
    double pad = b > a ? 0.05 * (b - a) : (log_scale ? 0.5 : fmax(0.1 * fabs(a), 1.0));
    a -= pad;
    b += pad;
    *lo = log_scale ? pow(10, a) : a;
    *hi = log_scale ? pow(10, b) : b;
    return 1;
}

bl_status bl_curve_write_png(const bl_curve *c, const char *path, int width, int height,
                             const char *title)
{
    return bl_curve_write_png_log(c, path, width, height, title, 0);
}

bl_status bl_curve_write_png_log(const bl_curve *c, const char *path, int width, int height,
                                 const char *title, int log_scale)
{
    int64_t n = c->n;
    double *xs = bl_malloc(((size_t)n + 1) * sizeof(double));
    double *tr = bl_malloc(((size_t)n + 1) * sizeof(double));
    double *va = bl_malloc(((size_t)n + 1) * sizeof(double));
    double *vx = bl_malloc(((size_t)n + 1) * sizeof(double));
    double *all = bl_malloc((2 * (size_t)n + 1) * sizeof(double));
    int64_t nv = 0;
    for (int64_t i = 0; i < n; i++) {
        xs[i] = (double)c->points[i].step;
        tr[i] = c->points[i].train_loss;
        all[i] = tr[i];
        if (isfinite(c->points[i].val_loss)) {
            vx[nv] = xs[i];
            va[nv] = c->points[i].val_loss;
            all[n + nv] = va[nv];
            nv++;
        }
    }
    double ylo = 0, yhi = 0;
    int64_t above = 0;
    if (!bl_curve_y_range(all, n + nv, log_scale, &ylo, &yhi, &above)) {
        free(xs), free(tr), free(va), free(vx), free(all);
        return bl_error(BL_ERR_ARG, "%s: the curve has no %s loss to plot", path, log_scale ? "positive finite" : "finite");
    }
    free(all);
    double xlo = n ? xs[0] : 0, xhi = n ? xs[n - 1] : 1;
    if (xhi <= xlo) xhi = xlo + 1;
    /* the plotted values: log10 on a log axis (non-positive ones are gaps), clipped to the top
     * of the axis (drawn there as triangles) when above it */
    const double ytop = log_scale ? log10(yhi) : yhi;
    for (int64_t i = 0; i < n; i++)
        if (log_scale) tr[i] = tr[i] > 0 ? log10(tr[i]) : NAN;
    for (int64_t i = 0; i < nv; i++)
        if (log_scale) va[i] = va[i] > 0 ? log10(va[i]) : NAN;

    char *tmp = NULL;
    bl_status st = bl_plplot_png_begin(path, width, height, &tmp);
    if (st != BL_OK) {
        free(xs), free(tr), free(va), free(vx);
        return st;
    }
    plscol0(2, 31, 119, 180);     /* train: blue */
    plscol0(3, 255, 127, 14);     /* validation: orange */
    plscol0(4, 200, 200, 200);    /* grid */
    plinit();
    pladv(0);
    plvsta();
    plwind(xlo, xhi, log_scale ? log10(ylo) : ylo, ytop);
    plcol0(4);
    plbox("g", 0, 0, log_scale ? "gl" : "g", 0, 0);
    plcol0(1);
    plbox("bcnst", 0, 0, log_scale ? "bcnstvl" : "bcnstv", 0, 0);
    pllab("optimizer step", log_scale ? "loss (log scale)" : "loss", title ? title : "training curve");
    if (above > 0) {
        char note[96];
        snprintf(note, sizeof note, "%lld value%s above the axis (triangles at the top)", (long long)above,
                 above > 1 ? "s" : "");
        plmtex("t", 0.3, 0.0, 0.0, note);
    }
    /* the train series may have NaN gaps: draw each finite run separately */
    plcol0(2);
    plwidth(1.5);
    for (int64_t i = 0; i < n;) {
        while (i < n && !isfinite(tr[i])) i++;
        int64_t j = i;
        while (j < n && isfinite(tr[j])) j++;
        if (j - i == 1) plpoin(1, xs + i, tr + i, 1);
        if (j - i > 1) plline((PLINT)(j - i), xs + i, tr + i);
        i = j;
    }
    for (int64_t i = 0; i < n; i++) /* clipped train values */
        if (isfinite(tr[i]) && tr[i] > ytop) plpoin(1, xs + i, (PLFLT[]){ytop}, 7);
    if (nv > 0) {
        plcol0(3);
        plwidth(2.0);
        double *vc = bl_malloc((size_t)nv * sizeof *vc);
        for (int64_t i = 0; i < nv; i++) vc[i] = isfinite(va[i]) && va[i] > ytop ? ytop : va[i];
        if (nv > 1) plline((PLINT)nv, vx, vc);
        for (int64_t i = 0; i < nv; i++)
            if (isfinite(va[i])) plpoin(1, vx + i, vc + i, va[i] > ytop ? 7 : 17);
        free(vc);
    }
    plwidth(1.0);
    int has_val = nv > 0;
    PLINT opts[2] = {PL_LEGEND_LINE, PL_LEGEND_LINE | PL_LEGEND_SYMBOL};
    PLINT text_colors[2] = {1, 1}, line_colors[2] = {2, 3}, line_styles[2] = {1, 1};
    PLINT symbol_colors[2] = {2, 3}, symbol_numbers[2] = {0, 1};
    PLFLT line_widths[2] = {1.5, 2.0}, symbol_scales[2] = {1.0, 1.0};
    const char *texts[2] = {"train loss", "validation loss"};
    const char *symbols[2] = {"", "#(728)"};
    PLFLT lw, lh;
    pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_TOP | PL_POSITION_RIGHT | PL_POSITION_INSIDE, 0.02, 0.02, 0.1, 0, 1, 1, 0,
             0, has_val ? 2 : 1, opts, 1.0, 1.0, 2.0, 0.0, text_colors, texts, NULL, NULL, NULL,
             NULL, line_colors, line_styles, line_widths, symbol_colors, symbol_scales,
             symbol_numbers, symbols);
    free(xs), free(tr), free(va), free(vx);
    return bl_plplot_png_end(path, tmp);
}

/* ---- the PNG file around a PLplot drawing (shared with lib/io/plot.c) ---------------------- */

bl_status bl_plplot_png_begin(const char *path, int width, int height, char **tmp_out)
{
    *tmp_out = NULL;
    if (width < 64 || height < 64 || width > 10000 || height > 10000)
        return bl_error(BL_ERR_ARG, "%s: plot size %d x %d not in [64, 10000]", path, width, height);
    /* PLplot ends the process on a device or file error, so both are checked first */
    if (!bl_plplot_has_device("pngcairo"))
        return bl_error(BL_ERR_IO, "%s: PLplot has no pngcairo device (install plplot-driver-cairo)", path);
    char *tmp = bl_atomic_tmp_path(path);
    FILE *probe = fopen(tmp, "wb");
    if (!probe) {
        bl_status st = bl_error(BL_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    fclose(probe);
    char geometry[32];
    snprintf(geometry, sizeof geometry, "%dx%d", width, height);
    plsdev("pngcairo");
    plsfnam(tmp);
    plsetopt("geometry", geometry);
    plscolbg(255, 255, 255);
    plscol0(1, 0, 0, 0);          /* axes, labels */
    *tmp_out = tmp;
    return BL_OK;
}

bl_status bl_plplot_png_end(const char *path, char *tmp)
{
    plend();
    struct stat sb;
    bl_status st;
    if (stat(tmp, &sb) != 0 || sb.st_size == 0) {
        unlink(tmp);
        st = bl_error(BL_ERR_IO, "%s: PLplot wrote no image", path);
    } else if (!bl_png_is_complete(tmp)) {
        unlink(tmp);
        st = bl_error(BL_ERR_IO, "%s: write failed: the image PLplot wrote is incomplete (disk full?)", path);
    } else {
        st = bl_atomic_rename(tmp, path);
    }
    free(tmp);
    return st;
}

/* min and max of the finite values of x[0..n); 0 if there are none */
static int bl_series_range(const double *x, int64_t n, double *lo, double *hi)
{
    int any = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) continue;
        if (!any || x[i] < *lo) *lo = x[i];
        if (!any || x[i] > *hi) *hi = x[i];
        any = 1;
    }
    return any;
}

bl_status bl_curve_write_panels_png(const char *path, int n_series, const char *const *titles,
                                    int64_t n, const double *x, const double *const *y,
                                    int panel_width, int panel_height, const char *xlabel)
{
    if (n_series < 1) return bl_error(BL_ERR_ARG, "%s: no series to plot", path);
    const int nx = (int)ceil(sqrt((double)n_series)), ny = (n_series + nx - 1) / nx;
    const int width = nx * panel_width, height = ny * panel_height;
    if (panel_width < 64 || panel_height < 64 || width > 10000 || height > 10000)
        return bl_error(BL_ERR_ARG, "%s: %d panels of %d x %d make a %d x %d plot (panels >= 64, plot <= 10000)",
                        path, n_series, panel_width, panel_height, width, height);
    char *tmp;
    bl_status st = bl_plplot_png_begin(path, width, height, &tmp);
    if (st) return st;
    double xlo = 0, xhi = 1;
    if (!bl_series_range(x, n, &xlo, &xhi)) xlo = 0, xhi = 1;
    if (xhi <= xlo) xlo -= 0.5, xhi += 0.5;
    plscol0(2, 31, 119, 180);
    plscol0(4, 200, 200, 200);
    plstar(nx, ny);
    plschr(0, 0.8);
    for (int k = 0; k < n_series; k++) {
        pladv(k + 1);
        plvsta();
        double lo = 0, hi = 1;
        if (!bl_series_range(y[k], n, &lo, &hi)) lo = 0, hi = 1;
        double pad = hi > lo ? 0.05 * (hi - lo) : fmax(0.1 * fabs(lo), 1e-3);
        plwind(xlo, xhi, lo - pad, hi + pad);
        plcol0(4);
        plbox("g", 0, 0, "g", 0, 0);
        plcol0(1);
        plbox("bcnst", 0, 0, "bcnstv", 0, 0);
        pllab(xlabel ? xlabel : "", "", titles[k]);
        plcol0(2);
        plwidth(1.5);
        for (int64_t i = 0; i < n;) {
            while (i < n && !(isfinite(y[k][i]) && isfinite(x[i]))) i++;
            int64_t j = i;
            while (j < n && isfinite(y[k][j]) && isfinite(x[j])) j++;
            if (j - i > 1) plline((PLINT)(j - i), x + i, y[k] + i);
            if (j > i) plpoin((PLINT)(j - i), x + i, y[k] + i, 17);
            i = j;
        }
        plwidth(1.0);
    }
    return bl_plplot_png_end(path, tmp);
}
