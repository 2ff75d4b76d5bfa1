/* An experiment in C: train the encoder a config describes, as `bliss train` does, and look at
 * q (docs/experiments.md). With the library installed:
 *
 *   cc experiment.c $(pkg-config --cflags --libs bliss) -o experiment
 *   ./experiment configs/quick.cfg run train.max_epochs=2
 *
 * Writes run/last.safetensors (and best.safetensors with validation), curve.csv / .png and
 * metrics.csv / .png; prints the first and last training loss and q of every factor. */
#include <stdio.h>

#include "experiment/experiment.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s CONFIG OUT_DIR [key=value ...]\n", argv[0]);
        return 2;
    }
    bl_experiment_opts o = bl_experiment_opts_default();
    o.out_dir = argv[2];
    bl_experiment *ex = NULL;
    bl_train_end end;
    if (bl_experiment_load(&ex, argv[1], argc - 3, (const char *const *)argv + 3, &o) ||
        bl_experiment_run(ex, &end)) {
        fprintf(stderr, "experiment: %s\n", bl_error_message());
        bl_experiment_free(ex);
        return 1;
    }
    const bl_curve *c = ex->curve;
    printf("%s after %lld steps: train loss %.6g -> %.6g\n", bl_train_end_name(end),
           (long long)ex->state.step, c->points[0].train_loss, c->points[c->n - 1].train_loss);
    bl_experiment_print_q_stats(ex, stdout);
    bl_experiment_free(ex);
    return 0;
}
