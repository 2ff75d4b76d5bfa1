/* Subcommands of the bliss CLI (tools/bliss.c parses the command line, these do the work). */
#ifndef BL_TOOLS_COMMANDS_H
#define BL_TOOLS_COMMANDS_H

#include <stdint.h>

#include "tools/settings.h"

#define BL_EXIT_ERROR 1
#define BL_EXIT_USAGE 2

/* options shared by every subcommand, and the subcommands' own */
typedef struct bl_cli {
    const char *cmd;
    const char *config;
    int n_sets;
    const char **sets;
    int threads;   /* 0: the OpenMP default */
    int has_seed;
    int64_t seed;
    const char *out, *data, *checkpoint, *input, *resume;
    int64_t max_steps, batches;
    int fits;
    int pad;       /* predict --pad */
    int64_t samples; /* predict --samples K: K catalogs drawn from q (0: none) */
} bl_cli;

/* Print "bliss CMD: error: <last bl_error message>" and return BL_EXIT_ERROR. */
int bl_cli_fail(const bl_cli *cli);
/* Load and check the whole config with the command line's --set / --seed. */
bl_status bl_cli_settings(const bl_cli *cli, bl_settings **s);
/* mkdir -p */
bl_status bl_cli_mkdirs(const char *dir);
/* The directory of output file `file` exists (else BL_ERR_IO saying so, before any work). */
bl_status bl_cli_check_out_dir(const char *file);

int bl_cmd_factors(bl_cli *cli);
int bl_cmd_train(bl_cli *cli);
int bl_cmd_generate(bl_cli *cli);
int bl_cmd_evaluate(bl_cli *cli);
int bl_cmd_predict(bl_cli *cli);

#endif
