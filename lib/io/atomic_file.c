#include "lib/io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *bl_atomic_tmp_path(const char *path)
{
    size_t n = strlen(path) + 32;
    char *tmp = bl_malloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    return tmp;
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
