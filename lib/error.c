#include "lib/error.h"

#include <execinfo.h>
#include <gsl/gsl_errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Thread_local char bl_last_message[1024];
static bl_error_handler *bl_handler = NULL;

bl_status bl_error(bl_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bl_last_message, sizeof bl_last_message, fmt, ap);
    va_end(ap);
    if (bl_handler) bl_handler(status, bl_last_message);
    return status;
}

bl_status bl_error_context(bl_status status, const char *fmt, ...)
{
    char prev[sizeof bl_last_message];
    snprintf(prev, sizeof prev, "%s", bl_last_message);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(bl_last_message, sizeof bl_last_message, fmt, ap);
    va_end(ap);
    /* append ": prev", cut to the buffer (the front, which names the context, is kept) */
    size_t used = n < 0 ? 0 : (size_t)n < sizeof bl_last_message ? (size_t)n : sizeof bl_last_message - 1;
    const char *parts[2] = {": ", prev};
    for (int k = 0; k < 2; k++)
        for (const char *c = parts[k]; *c && used + 1 < sizeof bl_last_message; c++)
            bl_last_message[used++] = *c;
    bl_last_message[used] = 0;
    if (bl_handler) bl_handler(status, bl_last_message);
    return status;
}

const char *bl_error_message(void) { return bl_last_message; }

const char *bl_status_name(bl_status status)
{
    static const char *names[] = {"ok", "bad argument", "I/O error", "format error",
                                  "config error", "out of memory", "non-finite value",
                                  "out of range"};
    return (unsigned)status < sizeof names / sizeof *names ? names[status] : "unknown error";
}

bl_error_handler *bl_set_error_handler(bl_error_handler *handler)
{
    bl_error_handler *old = bl_handler;
    bl_handler = handler;
    return old;
}

static void bl_gsl_handler(const char *reason, const char *file, int line, int gsl_errno)
{
    bl_error(BL_ERR_RANGE, "GSL error %d (%s) at %s:%d: %s", gsl_errno, gsl_strerror(gsl_errno),
             file, line, reason);
}

void bl_gsl_install_handler(void) { gsl_set_error_handler(bl_gsl_handler); }

_Noreturn void bl_abort(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "bliss: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    void *frames[32];
    int n = backtrace(frames, 32);
    fprintf(stderr, "backtrace:\n");
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    abort();
}

void *bl_malloc_at(size_t bytes, const char *file, int line)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) bl_abort(file, line, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *bl_calloc_at(size_t n, size_t size, const char *file, int line)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) bl_abort(file, line, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *bl_realloc_at(void *p, size_t bytes, const char *file, int line)
{
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) bl_abort(file, line, "out of memory reallocating to %zu bytes", bytes);
    return q;
}

char *bl_strdup_at(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = bl_malloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}
