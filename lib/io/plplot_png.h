/* A PNG drawn with PLplot's pngcairo device, written atomically (lib/io/atomic_file.h): shared
 * by the training curve (curve.c) and the image plots (plot.c). Not thread-safe (PLplot keeps
 * global state): call from one thread. */
#ifndef BL_PLPLOT_PNG_H
#define BL_PLPLOT_PNG_H

#include "lib/error.h"

/* Check the size (64..10000 pixels a side), the pngcairo device (BL_ERR_IO naming the
 * package plplot-driver-cairo when missing) and that a temporary file next to `path` can be
 * written (PLplot ends the process on those errors); then select the device, file and
 * geometry, white background, colour 1 black. *tmp: the temporary name (pass it to _end).
 * The caller sets its colours, calls plinit() and draws. */
bl_status bl_plplot_png_begin(const char *path, int width, int height, char **tmp);
/* plend(), check that PLplot wrote a whole PNG, rename it over `path`; frees tmp. */
bl_status bl_plplot_png_end(const char *path, char *tmp);
/* 1 if PLplot has the device `name` */
int bl_plplot_has_device(const char *name);
/* 1 if `path` is a whole PNG (signature, chunks, IEND at the end of the file) */
int bl_png_is_complete(const char *path);

#endif
