/* Checkpoints: a model's parameters and buffers, and optionally its Adam state, as one
 * safetensors file with PyTorch's names (docs/encoder.md).
 *
 *   <state_dict name>                         every tensor of the bl_params, in order;
 *                                             F32 (F64 in the double build), and I64 0-dim for
 *                                             names ending in ".num_batches_tracked"
 *   optimizer.state.<param name>.exp_avg      Adam first moment (parameter's shape)
 *   optimizer.state.<param name>.exp_avg_sq   Adam second moment
 *   optimizer.state.<param name>.step         I64 0-dim: the steps this parameter was updated
 *                                             in (torch's per-parameter state['step']; Adam
 *                                             skips parameters without a gradient)
 *   __metadata__: format = "bliss-c-checkpoint", version = "1", and with Adam: adam.step,
 *                 adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay; plus any
 *                 caller metadata (training state, config values).
 *
 * The model part is exactly a PyTorch state_dict (safetensors.torch.load_file + strict
 * load_state_dict after dropping the optimizer.* keys); tools/pt_convert.py converts BLISS
 * .pt state_dicts and Lightning checkpoints to this layout and back (Adam's per-index state
 * is mapped to parameter names by the order of the trainable entries).
 *
 * Loading checks the whole file before changing anything: every tensor of the bl_params must
 * be present with the same shape, and no other model tensor may be in the file; a mismatch is
 * BL_ERR_FORMAT with a message naming the file and listing what differs (missing, unexpected,
 * shape a vs b — the first few of each kind and their counts). Saving is atomic (temporary
 * file + rename). A round trip is bit-exact. */
#ifndef BL_CHECKPOINT_H
#define BL_CHECKPOINT_H

#include "autograd/optim.h"
#include "autograd/params.h"
#include "lib/io/safetensors.h"

#define BL_CHECKPOINT_FORMAT "bliss-c-checkpoint"

/* 1 for names PyTorch stores as int64 (BatchNorm's num_batches_tracked). */
int bl_checkpoint_is_integer(const char *name);

/* The tensors (and Adam state when adam != NULL) of a checkpoint in a new set; add metadata
 * with bl_safetensors_set_meta, then bl_safetensors_write. */
bl_safetensors *bl_checkpoint_pack(const bl_params *params, const bl_adam *adam);
/* Copy a set's tensors into params (and into adam when != NULL: its moments and step; its
 * hyperparameters stay as configured). `file` names the source in messages. With adam != NULL
 * a set without optimizer state is BL_ERR_FORMAT (a weights-only file cannot resume training);
 * with adam == NULL optimizer entries are ignored. A file without the per-parameter step
 * entries (older bliss-c files, tools/pt_convert.py output) gives every parameter adam.step,
 * except parameters whose moments are all zero (never a non-zero gradient): 0. */
bl_status bl_checkpoint_unpack(const bl_safetensors *st, const char *file, bl_params *params,
                               bl_adam *adam);

/* pack + n_meta (key, value) metadata strings + atomic write. */
bl_status bl_checkpoint_save(const char *path, const bl_params *params, const bl_adam *adam,
                             int n_meta, const char *const *keys, const char *const *values);
/* read + unpack. When meta != NULL the parsed file is handed back (its metadata:
 * bl_safetensors_meta) and must be freed by the caller; NULL on error. */
bl_status bl_checkpoint_load(const char *path, bl_params *params, bl_adam *adam,
                             bl_safetensors **meta);

#endif
