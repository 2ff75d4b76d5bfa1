/* Running the bliss binary from Check tests: argv in, exit status + captured stdout/stderr out.
 * The binary's path comes from the environment variable BLISS (set by tests/tools/meson.build),
 * the project's configs directory from BLISS_CONFIGS. */
#ifndef BL_TESTS_CLI_RUN_H
#define BL_TESTS_CLI_RUN_H

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    int status;        /* exit status, or 128 + signal */
    char out[1 << 16]; /* stdout (truncated) */
    char err[1 << 14]; /* stderr (truncated) */
} cli_result;

__attribute__((unused)) static void cli_read_file(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    buf[k] = 0;
    if (f) fclose(f);
}

/* Run `bliss args[0] args[1] ...` (args NULL-terminated) in directory `cwd` (NULL: current). */
__attribute__((unused)) static void cli_runv(cli_result *r, const char *cwd, const char *const *args)
{
    const char *bin = getenv("BLISS");
    ck_assert_msg(bin != NULL, "set BLISS to the bliss binary (meson test does)");
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (; *args && n < 63; args++) argv[n++] = *args;
    argv[n] = NULL;
    char out_path[] = "/tmp/bl_cli_out_XXXXXX", err_path[] = "/tmp/bl_cli_err_XXXXXX";
    int fo = mkstemp(out_path), fe = mkstemp(err_path);
    ck_assert(fo >= 0 && fe >= 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        if (cwd && chdir(cwd) != 0) _exit(127);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int ws;
    waitpid(pid, &ws, 0);
    r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    close(fo);
    close(fe);
    cli_read_file(out_path, r->out, sizeof r->out);
    cli_read_file(err_path, r->err, sizeof r->err);
    unlink(out_path);
    unlink(err_path);
}

/* Run `bliss args...` (NULL-terminated) in directory `cwd` (NULL: current). */
__attribute__((unused)) static void cli_run(cli_result *r, const char *cwd, ...)
{
    const char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, cwd);
    for (const char *a; (a = va_arg(ap, const char *)) && n < 63;) args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    cli_runv(r, cwd, args);
}

__attribute__((unused)) static void cli_write(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    ck_assert_msg(f != NULL, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
}

/* "<dir>/<name>" in one of 8 rotating buffers, so several can appear in one call */
__attribute__((unused)) static const char *cli_path(const char *dir, const char *name)
{
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

__attribute__((unused)) static void cli_rmtree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        char p[1024];
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", path, e->d_name);
                cli_rmtree(p);
            }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

__attribute__((unused)) static int cli_exists(const char *dir, const char *name)
{
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0 && sb.st_size > 0;
}

/* Symlink every .cfg file of the project's configs directory into dir, so test configs can @include them. */
__attribute__((unused)) static void cli_link_configs(const char *dir)
{
    const char *src = getenv("BLISS_CONFIGS");
    ck_assert_msg(src != NULL, "set BLISS_CONFIGS to the project's configs directory (meson test does)");
    DIR *d = opendir(src);
    ck_assert_msg(d != NULL, "cannot open %s", src);
    struct dirent *e;
    char from[1024], to[1024];
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".cfg")) continue;
        snprintf(from, sizeof from, "%s/%s", src, e->d_name);
        snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
        ck_assert_msg(symlink(from, to) == 0, "symlink %s", to);
    }
    closedir(d);
}

#define ck_assert_has(haystack, needle) \
    ck_assert_msg(strstr((haystack), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle), (haystack))

#endif
