#include "lib/io/atomic_file.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *bl_atomic_tmp_path(const char *path)
{
    size_t n = strlen(path) + 48;
    char *tmp = bl_malloc(n);
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    snprintf(tmp, n, "%.*s.%s" BL_ATOMIC_TMP_TAG "%ld", dir_len, path, path + dir_len, (long)getpid());
    return tmp;
}

long bl_atomic_tmp_owner(const char *name)
{
    if (name[0] != '.') return 0;
    const char *tag = NULL;
    for (const char *p = strstr(name + 1, BL_ATOMIC_TMP_TAG); p; p = strstr(p + 1, BL_ATOMIC_TMP_TAG))
        tag = p;
    if (!tag || tag == name + 1) return 0;
    const char *p = tag + strlen(BL_ATOMIC_TMP_TAG);
    char *end;
    errno = 0;
    long pid = strtol(p, &end, 10);
    if (errno || end == p || *end || pid <= 0 || !isdigit((unsigned char)*p)) return 0;
    return pid;
}

int bl_atomic_clean_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = bl_atomic_tmp_owner(e->d_name);
        /* only a process that no longer exists: a live one (or another user's) is writing */
        if (pid <= 0 || pid == (long)getpid() || pid > INT_MAX || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = bl_malloc(n);
        snprintf(p, n, "%s/%s", dir, e->d_name);
        removed += unlink(p) == 0;
        free(p);
    }
    closedir(d);
    return removed;
}

bl_status bl_atomic_open(bl_atomic_file *af, const char *path, const char *mode)
{
    af->path = bl_strdup(path);
    af->tmp = bl_atomic_tmp_path(path);
    af->f = fopen(af->tmp, mode);
    if (!af->f) {
        bl_status st = bl_error(BL_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        free(af->path);
        free(af->tmp);
        af->path = af->tmp = NULL;
        return st;
    }
    return BL_OK;
}

static void bl_atomic_release(bl_atomic_file *af)
{
    free(af->path);
    free(af->tmp);
    af->f = NULL;
    af->path = af->tmp = NULL;
}

void bl_atomic_abort(bl_atomic_file *af)
{
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    bl_atomic_release(af);
}

bl_status bl_atomic_commit(bl_atomic_file *af)
{
    bl_status st = BL_OK;
    int err = 0;
    errno = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) err = errno ? errno : EIO;
    if (!err && fsync(fileno(af->f)) != 0 && errno != EINVAL) err = errno;
    if (fclose(af->f) != 0 && !err) err = errno ? errno : EIO;
    af->f = NULL;
    if (err) {
        st = bl_error(BL_ERR_IO, "%s: write failed: %s", af->path, strerror(err));
        unlink(af->tmp);
    } else if (rename(af->tmp, af->path) != 0) {
        st = bl_error(BL_ERR_IO, "%s: cannot rename %s into place: %s", af->path, af->tmp,
                      strerror(errno));
        unlink(af->tmp);
    }
    bl_atomic_release(af);
    return st;
}

bl_status bl_atomic_rename(const char *tmp, const char *path)
{
    int fd = open(tmp, O_RDONLY);
    if (fd < 0) return bl_error(BL_ERR_IO, "%s: temporary %s vanished: %s", path, tmp, strerror(errno));
    int err = fsync(fd) != 0 && errno != EINVAL ? errno : 0;
    close(fd);
    if (err) {
        unlink(tmp);
        return bl_error(BL_ERR_IO, "%s: write failed: %s", path, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        bl_status st = bl_error(BL_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp,
                                strerror(errno));
        unlink(tmp);
        return st;
    }
    return BL_OK;
}
