#define _GNU_SOURCE /* memmem */
/* Config files and --set: the input is a config text, optionally followed by a line "--set"
 * and one assignment per line (at most 8). It is loaded as bliss does (@include of the
 * project's configs, overrides lists, --set, every module's keys and ranges). */
#include "tests/fuzz/fuzz_util.h"
#include "experiment/settings.h"

#include <dirent.h>
#include <sys/stat.h>

#ifndef BL_SOURCE_ROOT
#error "BL_SOURCE_ROOT must name the project root"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the project's configs beside the input, for its @include lines */
static void bl_fuzz_link_configs(void)
{
    static int done;
    if (done++) return;
    DIR *d = opendir(BL_SOURCE_ROOT "/configs");
    if (!d) abort();
    struct dirent *e;
    char from[1024], to[1024];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(from, sizeof from, "%s/configs/%s", BL_SOURCE_ROOT, e->d_name);
        snprintf(to, sizeof to, "%s/%s", bl_fuzz_dir(), e->d_name);
        if (symlink(from, to) != 0) abort();
    }
    closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bl_fuzz_link_configs();
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = 0;
    const char *sets[8];
    int n_sets = 0;
    char *mark = strstr(text, "\n--set\n");
    size_t cfg_len = size;
    if (mark) {
        cfg_len = (size_t)(mark - text) + 1;
        char *save = NULL;
        for (char *line = strtok_r(mark + 7, "\n", &save); line && n_sets < 8; line = strtok_r(NULL, "\n", &save))
            sets[n_sets++] = line;
    }
    const char *path = bl_fuzz_file("fuzz.cfg", data, cfg_len);
    bl_settings *s;
    if (bl_settings_load(&s, path, n_sets, sets, 0, 0) == BL_OK) bl_settings_free(s);
    free(text);
    return 0;
}
