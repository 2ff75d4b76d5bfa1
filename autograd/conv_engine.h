/* Which implementation runs bl_conv2d / bl_conv3d_depth (docs/conv.md, "Engines").
 *
 *   im2col  im2col / vertical taps + OpenBLAS GEMMs on NCHW tensors (float and double builds)
 *   onednn  oneDNN convolution primitives (float build only; oneDNN has no double convolutions)
 *
 * The default is the fastest engine the build has (onednn in a float build with oneDNN); the
 * environment variable BL_CONV_ENGINE=im2col|onednn overrides it when the first convolution
 * runs (an engine the build lacks is ignored there: the double build stays on im2col; an
 * unknown name exits with a message), bl_conv_set_engine at any time between steps. An op's backward uses the engine its
 * forward used. Not thread-safe: select the engine before running ops, never while ops run. */
#ifndef BL_CONV_ENGINE_H
#define BL_CONV_ENGINE_H

#include "lib/error.h"

typedef enum bl_conv_engine {
    BL_CONV_ENGINE_IM2COL = 0,
    BL_CONV_ENGINE_ONEDNN = 1,
} bl_conv_engine;

/* 1 if this build has the engine. */
int bl_conv_engine_available(bl_conv_engine engine);
/* "im2col" / "onednn". */
const char *bl_conv_engine_name(bl_conv_engine engine);
/* The engine of name `name`; BL_ERR_ARG (message naming the value and the choices) when the
 * name is unknown or the engine is not in this build. */
bl_status bl_conv_engine_parse(const char *name, bl_conv_engine *engine);
/* Select the engine (BL_ERR_ARG when it is not in this build). */
bl_status bl_conv_set_engine(bl_conv_engine engine);
/* The engine convolutions use now (reads BL_CONV_ENGINE on first use). */
bl_conv_engine bl_conv_get_engine(void);

/* Whether bl_conv2d_blocked / bl_conv3d_depth_blocked may give blocked outputs and
 * bl_conv2d_bn_silu_eval folds BatchNorm (1, the default), or every convolution output is
 * plain and the eval ConvBlock runs unfused (0: the behaviour before the layouts, for
 * comparisons). The environment variable BL_CONV_LAYOUT=plain|blocked sets it at the first
 * query (an unknown value exits with a message). Only the oneDNN engine has blocked layouts. */
void bl_conv_set_blocked(int on);
int bl_conv_get_blocked(void);

#endif
