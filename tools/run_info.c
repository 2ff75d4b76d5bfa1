#include "tools/run_info.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/atomic_file.h"
#include "models/checkpoint.h"
#include "autograd/conv_engine.h"
#include "tools/version.h" /* generated: BL_GIT_DESCRIBE */

const char *bl_cli_version(void)
{
    return BL_PROJECT_VERSION " (git " BL_GIT_DESCRIBE ")";
}

const char *bl_cli_conv_engine(void) { return bl_conv_engine_name(bl_conv_get_engine()); }

int bl_cli_threads(void) { return omp_get_max_threads(); }

bl_status bl_cli_write_run_config(const bl_cli *cli, const char *dir, const char *source,
                                  const char *text, int64_t seed)
{
    size_t n = strlen(dir) + 16;
    char *path = bl_malloc(n);
    snprintf(path, n, "%s/config.cfg", dir);
    bl_atomic_file af;
    bl_status st = bl_atomic_open(&af, path, "w");
    if (st == BL_OK) {
        FILE *f = af.f;
        fprintf(f, "# The resolved configuration of a `bliss %s` run (includes, overrides, extend and\n"
                   "# --set applied), written by bliss-c %s.\n# source: %s", cli->cmd, bl_cli_version(),
                source);
        for (int i = 0; i < cli->n_sets; i++) fprintf(f, " --set %s", cli->sets[i]);
        fprintf(f, "\n# seed %lld, threads %d, conv engine %s\n"
                   "# Training curves are identical only for the same thread count and engine.\n"
                   "# `bliss train -c config.cfg` repeats the run.\n\n%s",
                (long long)seed, bl_cli_threads(), bl_cli_conv_engine(), text);
        if (ferror(f)) {
            bl_atomic_abort(&af);
            st = bl_error(BL_ERR_IO, "%s: cannot write", path);
        } else {
            st = bl_atomic_commit(&af);
        }
    }
    free(path);
    return st;
}

bl_status bl_cli_checkpoint_settings(const bl_cli *cli, const bl_safetensors *ckpt, bl_settings **s)
{
    if (cli->config) return bl_cli_settings(cli, s);
    *s = NULL;
    const char *text = bl_safetensors_meta(ckpt, BL_META_CONFIG);
    if (!text)
        return bl_error(BL_ERR_CONFIG, "%s: the checkpoint records no config (not written by 'bliss train' of "
                        "this version, or converted from PyTorch): pass --config FILE", cli->checkpoint);
    size_t n = strlen(cli->checkpoint) + 32;
    char *name = bl_malloc(n);
    snprintf(name, n, "%s [its config]", cli->checkpoint);
    bl_status st = bl_settings_load_string(s, text, name, cli->n_sets, cli->sets, cli->has_seed, cli->seed);
    free(name);
    return st;
}

bl_status bl_cli_checkpoint_unpack(const bl_cli *cli, const bl_safetensors *ckpt, bl_params *params)
{
    bl_status st = bl_checkpoint_unpack(ckpt, cli->checkpoint, params, NULL);
    if (st && cli->config && bl_safetensors_meta(ckpt, BL_META_CONFIG)) {
        char msg[2048]; /* a note after the message (bl_error_context puts context in front) */
        snprintf(msg, sizeof msg, "%s", bl_error_message());
        st = bl_error(st, "%s\n  (%s does not describe this checkpoint; without --config the config recorded "
                      "in the checkpoint is used)", msg, cli->config);
    }
    return st;
}
