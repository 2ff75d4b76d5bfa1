/* bliss: the command-line tool of bliss-c (docs/cli.md).
 *
 *   bliss generate  simulate batches into safetensors shards (and FITS)
 *   bliss train     train the encoder; curve CSV + PNG, checkpoints, early stopping, resume
 *   bliss evaluate  metrics of a checkpoint on a dataset (JSON + table)
 *   bliss predict   catalogs for images (safetensors or FITS) -> FITS table + safetensors
 *   bliss factors   the variational factors of a config and the parameter count P
 *
 * Exit status: 0 success, 1 an error in the config, the data or the system (the message names
 * the file, key or line), 2 a usage error, 128 + signal when training was interrupted (the last
 * checkpoint is complete). */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/io/atomic_file.h"
#include <errno.h>
#include <libgen.h>
#include <sys/stat.h>

#include "tools/commands.h"
#include "tools/run_info.h"
#include "tools/dist.h"

typedef struct bl_command {
    const char *name;
    const char *summary;
    const char *usage;  /* options after the common ones */
    int (*run)(bl_cli *cli);
} bl_command;

static const char bl_common_help[] =
    "  -c, --config FILE    libconfig file (see docs/config.md); required, except that evaluate\n"
    "                       and predict use the config recorded in the checkpoint by default\n"
    "      --set KEY=VALUE  override a config value (repeatable), e.g. --set train.optimizer.lr=1e-4\n"
    "      --threads N      OpenMP/OpenBLAS threads (default: all cores)\n"
    "      --seed N         same as --set train.seed=N\n"
    "  -h, --help           this help\n";

int bl_cli_fail(const bl_cli *cli)
{
    fprintf(stderr, "bliss %s: error: %s\n", cli->cmd, bl_error_message());
    return BL_EXIT_ERROR;
}

bl_status bl_cli_settings(const bl_cli *cli, bl_settings **s)
{
    bl_status st = bl_settings_load(s, cli->config, cli->n_sets, cli->sets, cli->has_seed, cli->seed);
    /* before any of the run's tensors is allocated: a batch that cannot fit is an error (the
     * commands that run the network on prior.batch_size images) */
    int runs_network = !strcmp(cli->cmd, "train") || !strcmp(cli->cmd, "evaluate");
    if (st == BL_OK && runs_network && (st = bl_settings_check_memory(*s))) {
        bl_settings_free(*s);
        *s = NULL;
    }
    return st;
}

bl_status bl_cli_mkdirs(const char *dir)
{
    if (!*dir) return bl_error(BL_ERR_ARG, "the output directory is an empty string");
    char *p = bl_strdup(dir);
    bl_status st = BL_OK;
    for (char *q = p + 1;; q++) {
        char c = *q;
        if (c != '/' && c != 0) continue;
        *q = 0;
        struct stat sb;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            st = bl_error(BL_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
            break;
        }
        if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            st = bl_error(BL_ERR_IO, "%s: exists and is not a directory", p);
            break;
        }
        *q = c;
        if (c == 0) break;
    }
    free(p);
    /* temporaries of an earlier run that was killed while writing (nothing else removes them) */
    if (st == BL_OK) bl_atomic_clean_stale(dir);
    return st;
}

bl_status bl_cli_check_out_dir(const char *file)
{
    char *tmp = bl_strdup(file);
    const char *d = dirname(tmp);
    struct stat sb;
    bl_status st = BL_OK;
    if (stat(d, &sb) != 0)
        st = bl_error(BL_ERR_IO, "%s: cannot write there: the directory %s does not exist (create it, or choose "
                      "another -o)", file, d);
    else if (!S_ISDIR(sb.st_mode))
        st = bl_error(BL_ERR_IO, "%s: cannot write there: %s is not a directory", file, d);
    free(tmp);
    return st;
}

/* ---- factors ---------------------------------------------------------------------------- */

int bl_cmd_factors(bl_cli *cli)
{
    bl_settings *s;
    if (bl_cli_settings(cli, &s)) return bl_cli_fail(cli);
    printf("config %s: %d bands, tile_slen %d\n", s->path, s->n_bands, s->tile_slen);
    bl_vardist_spec_print(stdout, s->spec);
    /* the network's output width follows P; its size is what a checkpoint will hold */
    bl_encoder *enc = bl_encoder_alloc(s->spec, &s->arch, &s->encoder, (uint64_t)s->train.seed);
    printf("encoder: %d bands x %d channels in, P = %d out, %lld trainable parameters\n",
           s->arch.n_bands, s->arch.ch_per_band, s->spec->dim,
           (long long)bl_params_count_trainable(enc->params));
    bl_encoder_free(enc);
    bl_settings_free(s);
    return 0;
}

static const bl_command bl_commands[] = {
    {"generate", "simulate batches into safetensors shards (optionally FITS)",
     "  -o, --out DIR        output directory (default: generate.output_dir)\n"
     "      --fits           also write each shard's images and catalog as FITS\n",
     bl_cmd_generate},
    {"train", "train the encoder (curve CSV + PNG, checkpoints, early stopping)",
     "  -o, --out DIR        output directory (default: train.output_dir)\n"
     "      --data DIR       a dataset written by 'bliss generate' (default: train.data)\n"
     "      --resume FILE    continue from a checkpoint written by 'bliss train'\n"
     "      --init FILE      start from the weights of FILE (any safetensors with the\n"
     "                       state_dict names: a converted BLISS checkpoint); fresh Adam\n"
     "      --max-steps N    stop after N optimizer steps in total\n",
     bl_cmd_train},
    {"evaluate", "metrics of a checkpoint on a dataset (JSON + table)",
     "      --checkpoint FILE  encoder checkpoint (safetensors)\n"
     "      --data DIR         dataset written by 'bliss generate'\n"
     "      --batches N        evaluate the first N batches only\n"
     "  -o, --out FILE         metrics JSON (default: metrics.json)\n",
     bl_cmd_evaluate},
    {"predict", "catalogs for images (safetensors or FITS) -> FITS table + safetensors",
     "      --checkpoint FILE  encoder checkpoint (safetensors)\n"
     "  -i, --input FILE       images: a batch .safetensors or a FITS file (one HDU per band)\n"
     "  -o, --out PREFIX       writes PREFIX.fits and PREFIX.safetensors\n"
     "      --pad              pad images whose sides are not multiples of 16 with their background\n"
     "      --samples K        also write K catalogs drawn from q (FITS tables SAMPLE, samples.*)\n"
     "      --plot             also draw PREFIX.png (PREFIX_NNNN.png per image of a batch): the image\n"
     "                         with the predicted sources, and the true ones when the input has them\n"
     "      --band N           plot band N in grey (default: an RGB composite of bands 3, 2, 1)\n"
     "      --rgb R,G,B        plot bands R, G, B as red, green, blue\n"
     "      --plot-size WxH    plot size in pixels (default 800x800)\n",
     bl_cmd_predict},
    {"plot", "draw images with true and predicted sources, or a training curve, as PNG",
     "  -i, --input FILE       images (a batch .safetensors or FITS), true sources when it has them\n"
     "      --catalog FILE     predicted sources: a 'bliss predict' FITS file\n"
     "  -o, --out PREFIX       writes PREFIX.png (PREFIX_NNNN.png per image of a batch)\n"
     "      --band N           band N in grey (default: an RGB composite of bands 3, 2, 1)\n"
     "      --rgb R,G,B        bands R, G, B as red, green, blue\n"
     "      --plot-size WxH    size in pixels (default 800x800; curves 800x500)\n"
     "      --curve FILE       instead: redraw a curve.csv into --out FILE.png (no --config needed)\n"
     "      --log              with --curve: a logarithmic loss axis\n",
     bl_cmd_plot},
    {"factors", "print the variational factors of a config and the parameter count P", "",
     bl_cmd_factors},
};
#define BL_N_COMMANDS ((int)(sizeof bl_commands / sizeof bl_commands[0]))

static void bl_usage(FILE *f)
{
    fprintf(f, "usage: bliss COMMAND --config FILE [options]\n       bliss --version\n\ncommands:\n");
    for (int i = 0; i < BL_N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", bl_commands[i].name, bl_commands[i].summary);
    fprintf(f, "\n'bliss COMMAND --help' describes the options of a command.\n");
}

static void bl_command_help(FILE *f, const bl_command *c)
{
    fprintf(f, "usage: bliss %s --config FILE [options]\n\n%s.\n\noptions:\n%s%s", c->name,
            c->summary, bl_common_help, c->usage);
}

static int bl_parse_int(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
                        int64_t *v)
{
    char *end;
    long long x = strtoll(text, &end, 10);
    if (!*text || *end || x < lo || x > hi) {
        fprintf(stderr, "bliss %s: error: %s '%s': expected an integer in [%lld, %lld]\n", cmd, opt,
                text, (long long)lo, (long long)hi);
        return 0;
    }
    *v = x;
    return 1;
}

enum { OPT_SET = 256, OPT_THREADS, OPT_SEED, OPT_FITS, OPT_DATA, OPT_RESUME, OPT_MAX_STEPS,
       OPT_CHECKPOINT, OPT_BATCHES, OPT_PAD, OPT_INIT, OPT_SAMPLES, OPT_PLOT, OPT_BAND, OPT_RGB,
       OPT_PLOT_SIZE, OPT_CATALOG, OPT_CURVE, OPT_LOG };

static int bl_main(int argc, char **argv);

/* Under mpirun (tools/dist.h) a process that fails ends the whole job: its message is on
 * stderr, and the others must not wait for it in a collective. */
int main(int argc, char **argv)
{
    bl_dist_init(&argc, &argv);
    int status = bl_main(argc, argv);
    if (status != 0 && status < 128 && bl_dist_size() > 1) bl_dist_abort(status); /* not a signal stop */
    bl_dist_finalize();
    return status;
}

static int bl_main(int argc, char **argv)
{
    if (argc < 2) {
        bl_usage(stderr);
        return BL_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        bl_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("bliss-c %s\n", bl_cli_version());
        return 0;
    }
    const bl_command *cmd = NULL;
    for (int i = 0; i < BL_N_COMMANDS; i++)
        if (!strcmp(argv[1], bl_commands[i].name)) cmd = &bl_commands[i];
    if (!cmd) {
        fprintf(stderr, "bliss: error: unknown command '%s'\n\n", argv[1]);
        bl_usage(stderr);
        return BL_EXIT_USAGE;
    }
    bl_gsl_install_handler();
    bl_cli cli = {.cmd = cmd->name, .plot_band = -1};
    cli.sets = bl_calloc((size_t)argc, sizeof *cli.sets);
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},  {"set", required_argument, NULL, OPT_SET},
        {"threads", required_argument, NULL, OPT_THREADS}, {"seed", required_argument, NULL, OPT_SEED},
        {"help", no_argument, NULL, 'h'},          {"out", required_argument, NULL, 'o'},
        {"input", required_argument, NULL, 'i'},   {"fits", no_argument, NULL, OPT_FITS},
        {"data", required_argument, NULL, OPT_DATA}, {"resume", required_argument, NULL, OPT_RESUME},
        {"init", required_argument, NULL, OPT_INIT},
        {"max-steps", required_argument, NULL, OPT_MAX_STEPS},
        {"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
        {"batches", required_argument, NULL, OPT_BATCHES},
        {"pad", no_argument, NULL, OPT_PAD},
        {"samples", required_argument, NULL, OPT_SAMPLES},
        {"plot", no_argument, NULL, OPT_PLOT},      {"band", required_argument, NULL, OPT_BAND},
        {"rgb", required_argument, NULL, OPT_RGB},  {"plot-size", required_argument, NULL, OPT_PLOT_SIZE},
        {"catalog", required_argument, NULL, OPT_CATALOG}, {"curve", required_argument, NULL, OPT_CURVE},
        {"log", no_argument, NULL, OPT_LOG},
        {NULL, 0, NULL, 0},
    };
    /* which subcommand accepts which specific option */
    static const struct { int opt; const char *cmds; } allowed[] = {
        {'o', "generate train evaluate predict plot"}, {'i', "predict plot"}, {OPT_FITS, "generate"},
        {OPT_DATA, "train evaluate"}, {OPT_RESUME, "train"}, {OPT_INIT, "train"}, {OPT_MAX_STEPS, "train"},
        {OPT_CHECKPOINT, "evaluate predict"}, {OPT_BATCHES, "evaluate"}, {OPT_PAD, "predict"},
        {OPT_SAMPLES, "predict"}, {OPT_PLOT, "predict"}, {OPT_BAND, "predict plot"}, {OPT_RGB, "predict plot"},
        {OPT_PLOT_SIZE, "predict plot"}, {OPT_CATALOG, "plot"}, {OPT_CURVE, "plot"}, {OPT_LOG, "plot"},
    };
    int status = 0, c, li;
    optind = 2;
    opterr = 0;
    while (status == 0 && (c = getopt_long(argc, argv, ":c:ho:i:", longopts, &li)) != -1) {
        for (size_t k = 0; k < sizeof allowed / sizeof allowed[0]; k++)
            if (allowed[k].opt == c && !strstr(allowed[k].cmds, cmd->name)) {
                fprintf(stderr, "bliss %s: error: option '%s' does not apply to this command\n",
                        cmd->name, argv[optind - 1]);
                status = BL_EXIT_USAGE;
            }
        if (status) break;
        int64_t v;
        switch (c) {
        case 'c': cli.config = optarg; break;
        case 'h': bl_command_help(stdout, cmd); free(cli.sets); return 0;
        case 'o': cli.out = optarg; break;
        case 'i': cli.input = optarg; break;
        case OPT_SET: cli.sets[cli.n_sets++] = optarg; break;
        case OPT_THREADS:
            if (!bl_parse_int(cmd->name, "--threads", optarg, 1, 1024, &v)) status = BL_EXIT_USAGE;
            cli.threads = (int)v;
            break;
        case OPT_SEED:
            if (!bl_parse_int(cmd->name, "--seed", optarg, 0, INT64_MAX, &cli.seed)) status = BL_EXIT_USAGE;
            cli.has_seed = 1;
            break;
        case OPT_FITS: cli.fits = 1; break;
        case OPT_PAD: cli.pad = 1; break;
        case OPT_DATA: cli.data = optarg; break;
        case OPT_RESUME: cli.resume = optarg; break;
        case OPT_INIT: cli.init = optarg; break;
        case OPT_CHECKPOINT: cli.checkpoint = optarg; break;
        case OPT_MAX_STEPS:
            if (!bl_parse_int(cmd->name, "--max-steps", optarg, 1, INT64_MAX, &cli.max_steps))
                status = BL_EXIT_USAGE;
            break;
        case OPT_PLOT: cli.plot = 1; break;
        case OPT_LOG: cli.log_scale = 1; break;
        case OPT_CATALOG: cli.catalog = optarg; break;
        case OPT_CURVE: cli.curve = optarg; break;
        case OPT_BAND:
            if (!bl_parse_int(cmd->name, "--band", optarg, 0, 63, &v)) status = BL_EXIT_USAGE;
            cli.plot_band = (int)v;
            break;
        case OPT_RGB: {
            int used = 0;
            cli.has_rgb = 1;
            if (sscanf(optarg, "%d,%d,%d%n", &cli.plot_rgb[0], &cli.plot_rgb[1], &cli.plot_rgb[2], &used) != 3 ||
                optarg[used] != 0 || cli.plot_rgb[0] < 0 || cli.plot_rgb[1] < 0 || cli.plot_rgb[2] < 0) {
                fprintf(stderr, "bliss %s: error: --rgb '%s': expected three band indices R,G,B (e.g. 3,2,1)\n",
                        cmd->name, optarg);
                status = BL_EXIT_USAGE;
            }
            break;
        }
        case OPT_PLOT_SIZE: {
            int used = 0;
            if (sscanf(optarg, "%dx%d%n", &cli.plot_width, &cli.plot_height, &used) != 2 || optarg[used] != 0 ||
                cli.plot_width < 64 || cli.plot_height < 64 || cli.plot_width > 10000 || cli.plot_height > 10000) {
                fprintf(stderr, "bliss %s: error: --plot-size '%s': expected WxH, 64 to 10000 pixels a side\n",
                        cmd->name, optarg);
                status = BL_EXIT_USAGE;
            }
            break;
        }
        case OPT_SAMPLES:
            if (!bl_parse_int(cmd->name, "--samples", optarg, 0, 10000, &cli.samples)) status = BL_EXIT_USAGE;
            break;
        case OPT_BATCHES:
            if (!bl_parse_int(cmd->name, "--batches", optarg, 1, INT64_MAX, &cli.batches))
                status = BL_EXIT_USAGE;
            break;
        case ':':
            fprintf(stderr, "bliss %s: error: option '%s' needs a value\n", cmd->name, argv[optind - 1]);
            status = BL_EXIT_USAGE;
            break;
        default:
            fprintf(stderr, "bliss %s: error: unknown option '%s' (see bliss %s --help)\n", cmd->name,
                    argv[optind - 1], cmd->name);
            status = BL_EXIT_USAGE;
        }
    }
    if (status == 0 && optind < argc) {
        fprintf(stderr, "bliss %s: error: unexpected argument '%s'\n", cmd->name, argv[optind]);
        status = BL_EXIT_USAGE;
    }
    /* evaluate and predict read the config recorded in the checkpoint */
    if (status == 0 && cli.plot_band >= 0 && cli.has_rgb) {
        fprintf(stderr, "bliss %s: error: --band and --rgb exclude each other\n", cmd->name);
        status = BL_EXIT_USAGE;
    }
    /* plot --curve needs no config */
    if (status == 0 && !cli.config && !(cli.checkpoint && (!strcmp(cmd->name, "evaluate") ||
                                                           !strcmp(cmd->name, "predict"))) &&
        !(cli.curve && !strcmp(cmd->name, "plot"))) {
        fprintf(stderr, "bliss %s: error: --config FILE is required (see bliss %s --help)\n",
                cmd->name, cmd->name);
        status = BL_EXIT_USAGE;
    }
    if (status == 0) {
        if (cli.threads > 0) omp_set_num_threads(cli.threads);
        /* train, generate, evaluate and predict share the work between mpirun's processes;
         * the other commands run on rank 0 alone (docs/scaling.md) */
        if (bl_dist_rank() > 0 && strcmp(cmd->name, "train") && strcmp(cmd->name, "generate") &&
            strcmp(cmd->name, "evaluate") && strcmp(cmd->name, "predict"))
            fprintf(stderr, "bliss %s: note: rank %d idle: '%s' is not split across processes; rank 0 does all of it\n",
                    cmd->name, bl_dist_rank(), cmd->name);
        else
            status = cmd->run(&cli);
    }
    free(cli.sets);
    return status;
}
