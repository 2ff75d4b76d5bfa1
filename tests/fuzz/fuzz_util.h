/* Shared by the libFuzzer harnesses (tests/fuzz/README.md): readers that take a path get the
 * input through a per-process file in a private temporary directory. */
#ifndef BL_FUZZ_UTIL_H
#define BL_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char bl_fuzz_dir_name[64];

static void bl_fuzz_dir_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", bl_fuzz_dir_name);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", bl_fuzz_dir_name);
}

/* A private directory, made once per process and removed at exit. */
static const char *bl_fuzz_dir(void)
{
    if (!bl_fuzz_dir_name[0]) {
        snprintf(bl_fuzz_dir_name, sizeof bl_fuzz_dir_name, "/tmp/bl_fuzz_XXXXXX");
        if (!mkdtemp(bl_fuzz_dir_name)) abort();
        atexit(bl_fuzz_dir_remove);
    }
    return bl_fuzz_dir_name;
}

/* The input as the file <dir>/<name>; returns its path (static). */
__attribute__((unused)) static const char *bl_fuzz_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", bl_fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
    return path;
}

#endif
