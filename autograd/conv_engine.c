/* Convolution engine selection (autograd/conv_engine.h). */
#include "autograd/conv_engine.h"
#include "autograd/conv_onednn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const engine_names[] = {"im2col", "onednn"};

/* -1 until the first query or bl_conv_set_engine */
static int conv_engine = -1;

int bl_conv_engine_available(bl_conv_engine engine)
{
#ifdef BL_CONV_HAVE_ONEDNN
    return engine == BL_CONV_ENGINE_IM2COL || engine == BL_CONV_ENGINE_ONEDNN;
#else
    return engine == BL_CONV_ENGINE_IM2COL;
#endif
}

const char *bl_conv_engine_name(bl_conv_engine engine)
{
    return (unsigned)engine < sizeof engine_names / sizeof engine_names[0] ? engine_names[engine] : "?";
}

bl_status bl_conv_engine_parse(const char *name, bl_conv_engine *engine)
{
    for (int e = 0; e < (int)(sizeof engine_names / sizeof engine_names[0]); e++) {
        if (strcmp(name, engine_names[e])) continue;
        if (!bl_conv_engine_available((bl_conv_engine)e))
            return bl_error(BL_ERR_ARG, "convolution engine '%s' is not in this build (%s)", name,
#ifdef BL_REAL_DOUBLE
                            "the double-precision build has only im2col"
#else
                            "built without oneDNN: only im2col"
#endif
            );
        *engine = (bl_conv_engine)e;
        return BL_OK;
    }
    return bl_error(BL_ERR_ARG, "unknown convolution engine '%s' (expected im2col or onednn)", name);
}

bl_status bl_conv_set_engine(bl_conv_engine engine)
{
    if (!bl_conv_engine_available(engine))
        return bl_error(BL_ERR_ARG, "convolution engine '%s' is not in this build",
                        bl_conv_engine_name(engine));
    conv_engine = (int)engine;
    return BL_OK;
}

bl_conv_engine bl_conv_get_engine(void)
{
    if (conv_engine < 0) {
        bl_conv_engine e = bl_conv_engine_available(BL_CONV_ENGINE_ONEDNN) ? BL_CONV_ENGINE_ONEDNN
                                                                          : BL_CONV_ENGINE_IM2COL;
        const char *env = getenv("BL_CONV_ENGINE");
        if (env && *env) {
            int known = 0;
            for (int k = 0; k < (int)(sizeof engine_names / sizeof engine_names[0]); k++)
                if (!strcmp(env, engine_names[k])) {
                    known = 1;
                    /* an engine this build lacks (onednn in the double build) leaves the
                     * default: one environment serves both builds of a test suite */
                    if (bl_conv_engine_available((bl_conv_engine)k)) e = (bl_conv_engine)k;
                }
            if (!known) { /* a user error with no caller to return it to */
                fprintf(stderr, "bliss: BL_CONV_ENGINE=%s: unknown convolution engine "
                                "(expected im2col or onednn)\n", env);
                exit(2);
            }
        }
        conv_engine = (int)e;
    }
    return (bl_conv_engine)conv_engine;
}

/* -1 until the first query or bl_conv_set_blocked */
static int conv_blocked = -1;

void bl_conv_set_blocked(int on) { conv_blocked = on != 0; }

int bl_conv_get_blocked(void)
{
    if (conv_blocked < 0) {
        const char *env = getenv("BL_CONV_LAYOUT");
        conv_blocked = 1;
        if (env && *env) {
            if (!strcmp(env, "plain")) {
                conv_blocked = 0;
            } else if (strcmp(env, "blocked")) { /* a user error with no caller to return it to */
                fprintf(stderr, "bliss: BL_CONV_LAYOUT=%s: unknown layout (expected plain or "
                                "blocked)\n", env);
                exit(2);
            }
        }
    }
    return conv_blocked;
}
