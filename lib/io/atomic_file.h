/* Output files that appear only complete (docs/architecture.md, Errors): write to "<path>.tmp.<pid>" in the same
 * directory, then rename over `path` (atomic on POSIX within one file system). A crash, a kill
 * or a full disk leaves the previous version of `path` (or nothing) plus at most a stray
 * temporary, never a half-written `path`. */
#ifndef BL_ATOMIC_FILE_H
#define BL_ATOMIC_FILE_H

#include <stdio.h>

#include "lib/error.h"

typedef struct bl_atomic_file {
    FILE *f;      /* write here */
    char *path;   /* final name */
    char *tmp;    /* temporary name */
} bl_atomic_file;

/* Open the temporary for writing ("w" or "wb"); BL_ERR_IO naming the path on failure. */
bl_status bl_atomic_open(bl_atomic_file *af, const char *path, const char *mode);
/* Flush, fsync, close and rename; any write error so far (disk full) is BL_ERR_IO and removes
 * the temporary. af is released either way. */
bl_status bl_atomic_commit(bl_atomic_file *af);
/* Close and remove the temporary (after an error while writing). */
void bl_atomic_abort(bl_atomic_file *af);

/* For writers that take a file name (cfitsio, PLplot): the temporary name to hand them
 * (malloc'ed), and the final rename. bl_atomic_rename fsyncs `tmp`, renames it and removes
 * it on failure. */
char *bl_atomic_tmp_path(const char *path);
bl_status bl_atomic_rename(const char *tmp, const char *path);

#endif
