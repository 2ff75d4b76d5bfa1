/* Errors: the two channels of docs/architecture.md, Errors.
 *
 * 1. Programmer errors (shape mismatch between two tensors, NULL descriptor, index out of
 *    range): BL_ASSERT / bl_abort print the op, the shapes and file:line, then abort().
 * 2. User errors (config, data files, CLI arguments, NaN in a batch, disk full): functions
 *    return a bl_status != BL_OK after calling bl_error(), which formats a message naming the
 *    file/key/line/shape, stores it (thread-local, see bl_error_message) and passes it to the
 *    replaceable handler (default: none, the caller prints). */
#ifndef BL_ERROR_H
#define BL_ERROR_H

#include <stddef.h>

typedef enum {
    BL_OK = 0,
    BL_ERR_ARG,     /* bad argument / option value */
    BL_ERR_IO,      /* missing file, read/write failure, disk full */
    BL_ERR_FORMAT,  /* malformed or truncated data file, wrong shape in a file */
    BL_ERR_CONFIG,  /* malformed config, unknown key, wrong type, value out of range */
    BL_ERR_NOMEM,
    BL_ERR_NAN,     /* non-finite value in data */
    BL_ERR_RANGE    /* value outside its domain */
} bl_status;

typedef void bl_error_handler(bl_status status, const char *message);

/* Record a user error; returns `status` so `return bl_error(BL_ERR_IO, "...")` reads well. */
bl_status bl_error(bl_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message recorded by this thread ("" if none). */
const char *bl_error_message(void);
/* Record `status` with the message "<fmt ...>: <the message recorded so far>": the one way to
 * add context (a file, a key, an index) to an error that a callee reported. */
bl_status bl_error_context(bl_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *bl_status_name(bl_status status);
/* Replace the handler called by bl_error; returns the previous one (NULL = no handler). */
bl_error_handler *bl_set_error_handler(bl_error_handler *handler);
/* Route GSL errors into bl_error instead of GSL's default abort handler. */
void bl_gsl_install_handler(void);

_Noreturn void bl_abort(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define BL_ASSERT(cond, ...) \
    do { if (!(cond)) bl_abort(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* Checked allocation: aborts with the size and call site when memory runs out. */
void *bl_malloc_at(size_t bytes, const char *file, int line);
void *bl_calloc_at(size_t n, size_t size, const char *file, int line);
void *bl_realloc_at(void *p, size_t bytes, const char *file, int line);
char *bl_strdup_at(const char *s, const char *file, int line);
#define bl_malloc(bytes) bl_malloc_at((bytes), __FILE__, __LINE__)
#define bl_calloc(n, size) bl_calloc_at((n), (size), __FILE__, __LINE__)
#define bl_realloc(p, bytes) bl_realloc_at((p), (bytes), __FILE__, __LINE__)
#define bl_strdup(s) bl_strdup_at((s), __FILE__, __LINE__)

#endif
