/* Output files that appear only complete (docs/architecture.md, Errors): write to "<dir>/.<name>.tmp-<pid>" in the
 * same directory, then rename over `path` (atomic on POSIX within one file system). A crash, a
 * kill or a full disk leaves the previous version of `path` (or nothing) plus at most a stray
 * temporary, never a half-written `path`. The temporary is a hidden file with its own prefix,
 * so globs such as "*.safetensors" never match it, and bl_atomic_clean_stale removes those of
 * processes that no longer exist. */
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

/* a temporary's name: '.', the final name, this tag, the writer's pid */
#define BL_ATOMIC_TMP_TAG ".tmp-"
/* The pid of the process that wrote temporary `name` (a file name without directory), or 0 if
 * `name` is not one of our temporaries. */
long bl_atomic_tmp_owner(const char *name);
/* Remove the temporaries in `dir` left by processes that no longer exist (killed while writing);
 * returns how many were removed. */
int bl_atomic_clean_stale(const char *dir);
bl_status bl_atomic_rename(const char *tmp, const char *path);

#endif
