/* Progress of a long loop on a terminal or in a log (docs/cli.md).
 *
 * On a terminal (isatty) the last line is a bar redrawn in place:
 *   train [#########...........]  450/1000  45%  loss 3.21  lr 1e-3  12.3 s  eta 15.0 s
 * and every `print_every` steps a permanent line is printed above it, so the curve stays on
 * screen. Not on a terminal (a log file, a pipe, CI) only the permanent lines are printed,
 * each ending in a newline, with no carriage returns. */
#ifndef BL_PROGRESS_H
#define BL_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    BL_PROGRESS_AUTO = 0,   /* bar iff isatty(fileno(out)) */
    BL_PROGRESS_BAR,
    BL_PROGRESS_PLAIN,
} bl_progress_mode;

typedef struct bl_progress bl_progress;

/* total steps (> 0), label printed first, print_every >= 1. Steps are counted from
 * `first_step` (a resumed run starts there; the ETA counts only steps done in this run). */
bl_progress *bl_progress_alloc(FILE *out, const char *label, int64_t first_step, int64_t total,
                               int64_t print_every, bl_progress_mode mode);
void bl_progress_free(bl_progress *p);
/* Step `step` (1-based, <= total) is done; `status` (may be NULL) is free text such as
 * "loss 3.21  lr 1e-3". Prints the permanent line when step % print_every == 0 or
 * step == total. */
void bl_progress_update(bl_progress *p, int64_t step, const char *status);
/* A line of its own (validation result, checkpoint saved) without breaking the bar. */
void bl_progress_message(bl_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clear the bar (terminal); the permanent lines remain. */
void bl_progress_finish(bl_progress *p);
/* 1 if p draws a bar */
int bl_progress_is_bar(const bl_progress *p);

#endif
