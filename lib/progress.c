#include "lib/progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/error.h"

#define BL_BAR_WIDTH 24

struct bl_progress {
    FILE *out;
    char label[32];
    int64_t first, total, every, last_step;
    int bar;          /* drawing a bar (terminal) */
    int bar_shown;    /* the bar is on the current line */
    double t0;
    char status[256];
};

static double bl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bl_progress *bl_progress_alloc(FILE *out, const char *label, int64_t first_step, int64_t total,
                               int64_t print_every, bl_progress_mode mode)
{
    BL_ASSERT(total > 0 && print_every >= 1 && first_step >= 0,
              "progress: total %lld, print_every %lld, first_step %lld", (long long)total,
              (long long)print_every, (long long)first_step);
    bl_progress *p = bl_calloc(1, sizeof *p);
    p->out = out;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->first = p->last_step = first_step;
    p->total = total;
    p->every = print_every;
    p->bar = mode == BL_PROGRESS_BAR || (mode == BL_PROGRESS_AUTO && isatty(fileno(out)));
    p->t0 = bl_now();
    return p;
}

void bl_progress_free(bl_progress *p) { free(p); }

int bl_progress_is_bar(const bl_progress *p) { return p->bar; }

static void bl_progress_clear(bl_progress *p)
{
    if (p->bar_shown) {
        fputs("\r\033[K", p->out);
        p->bar_shown = 0;
    }
}

static void bl_progress_draw(bl_progress *p)
{
    double el = bl_now() - p->t0;
    int64_t done = p->last_step - p->first, left = p->total - p->last_step;
    int fill = (int)(BL_BAR_WIDTH * p->last_step / p->total);
    char bar[BL_BAR_WIDTH + 1];
    for (int i = 0; i < BL_BAR_WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[BL_BAR_WIDTH] = 0;
    fprintf(p->out, "\r\033[K%s [%s] %lld/%lld %3d%%  %s  %.1f s", p->label, bar,
            (long long)p->last_step, (long long)p->total, (int)(100 * p->last_step / p->total),
            p->status, el);
    if (done > 0 && left > 0) fprintf(p->out, "  eta %.1f s", el / (double)done * (double)left);
    fflush(p->out);
    p->bar_shown = 1;
}

void bl_progress_update(bl_progress *p, int64_t step, const char *status)
{
    p->last_step = step;
    snprintf(p->status, sizeof p->status, "%s", status ? status : "");
    if (step % p->every == 0 || step == p->total) {
        bl_progress_clear(p);
        fprintf(p->out, "%s %lld/%lld  %s  %.1f s\n", p->label, (long long)step,
                (long long)p->total, p->status, bl_now() - p->t0);
        fflush(p->out);
    }
    if (p->bar) bl_progress_draw(p);
}

void bl_progress_message(bl_progress *p, const char *fmt, ...)
{
    bl_progress_clear(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    if (p->bar && p->last_step > p->first) bl_progress_draw(p);
    fflush(p->out);
}

void bl_progress_finish(bl_progress *p)
{
    bl_progress_clear(p);
    fflush(p->out);
}
