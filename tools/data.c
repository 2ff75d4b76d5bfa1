#include "tools/data.h"

#include <stdlib.h>

struct bl_cli_data {
    const bl_settings *s;
};

bl_status bl_cli_data_open(bl_cli_data **out, const bl_settings *s, const char *dir)
{
    (void)s;
    *out = NULL;
    return bl_error(BL_ERR_ARG, "data source '%s': the simulator and the dataset reader (lib/sim) "
                    "are not in this build yet", dir ? dir : "simulate");
}

void bl_cli_data_free(bl_cli_data *d) { free(d); }

bl_batch_source bl_cli_data_source(bl_cli_data *d, bl_data_split split, int64_t n_batches)
{
    (void)d;
    (void)split;
    return (bl_batch_source){.user = NULL, .get = NULL, .n_batches = n_batches};
}

bl_status bl_cli_read_images(const bl_settings *s, const char *path, bl_tensor **images,
                             bl_tensor **background)
{
    (void)s;
    *images = *background = NULL;
    return bl_error(BL_ERR_ARG, "%s: reading images needs lib/sim (not in this build yet)", path);
}

bl_status bl_cli_normalize(const bl_settings *s, bl_ctx *ctx, const bl_tensor *images,
                           const bl_tensor *background, bl_tensor **x)
{
    (void)s, (void)ctx, (void)images, (void)background;
    *x = NULL;
    return bl_error(BL_ERR_ARG, "the image normaliser (lib/sim) is not in this build yet");
}
