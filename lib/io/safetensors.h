/* safetensors files: named tensors for checkpoints, cached datasets and simulated batches.
 *
 * Format (https://github.com/huggingface/safetensors): an unsigned 64-bit little-endian header
 * length N, N bytes of UTF-8 JSON, then the raw little-endian tensor bytes. The JSON maps each
 * tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets
 * relative to the byte buffer after the header); the optional key "__metadata__" maps strings
 * to strings. We write tensors in insertion order, densely packed, and pad the header with
 * spaces to a multiple of 8 bytes (as the reference implementation does), so the data of every
 * tensor is 8-byte aligned in the file.
 *
 * Reading checks everything a damaged or hostile file can get wrong and returns BL_ERR_FORMAT
 * (never crashes): truncated length prefix, header length beyond the file, invalid JSON,
 * duplicate names, unknown dtype, negative or overflowing shape, offsets that are out of range,
 * overlap, leave holes, or disagree with shape x dtype size. Writing goes through lib/io/atomic_file.h
 * (temporary file, then rename), so a failed write never leaves a half-written file under the
 * final name.
 *
 * A bl_safetensors is an in-memory set of tensors (copied on add, owned by the set). Host byte
 * order must be little-endian (checked at compile time). */
#ifndef BL_SAFETENSORS_H
#define BL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"
#include "lib/tensor.h"

/* Up to 8 dims in a file (PyTorch checkpoints rarely exceed 5). */
#define BL_ST_MAX_DIMS 8

typedef enum { BL_DTYPE_F32, BL_DTYPE_F64, BL_DTYPE_I32, BL_DTYPE_I64 } bl_dtype;

typedef struct bl_st_tensor {
    char *name;
    bl_dtype dtype;
    int ndim;
    int64_t shape[BL_ST_MAX_DIMS];
    int64_t numel;
    void *data;         /* numel * bl_dtype_size(dtype) bytes, owned */
} bl_st_tensor;

typedef struct bl_safetensors {
    int n, cap;
    bl_st_tensor *tensors;      /* insertion order (file order when read) */
    int n_meta, cap_meta;
    char **meta_keys, **meta_values;
} bl_safetensors;

size_t bl_dtype_size(bl_dtype dtype);
const char *bl_dtype_name(bl_dtype dtype);   /* "F32", ... */

bl_safetensors *bl_safetensors_alloc(void);
void bl_safetensors_free(bl_safetensors *st);

/* Copy `data` (numel * size bytes) in as tensor `name`. A duplicate or empty name, or more
 * than BL_ST_MAX_DIMS dims, is BL_ERR_ARG naming the tensor. */
bl_status bl_safetensors_add(bl_safetensors *st, const char *name, bl_dtype dtype, int ndim,
                             const int64_t *shape, const void *data);
/* A bl_tensor (bl_real) stored as `dtype` (F32 or F64): F32 for PyTorch-compatible files. */
bl_status bl_safetensors_add_tensor(bl_safetensors *st, const char *name, const bl_tensor *t,
                                    bl_dtype dtype);
/* Set (or replace) a "__metadata__" string. */
void bl_safetensors_set_meta(bl_safetensors *st, const char *key, const char *value);
/* The metadata value or NULL. */
const char *bl_safetensors_meta(const bl_safetensors *st, const char *key);

/* The tensor `name` or NULL. */
const bl_st_tensor *bl_safetensors_find(const bl_safetensors *st, const char *name);

/* Look up tensor `name` and check it against the expected dims: BL_ERR_FORMAT naming `file`
 * (used in the message only; may be NULL), the tensor, its shape and the expected shape when
 * it is missing or its ndim/shape differ. An expected size of -1 matches any size. */
bl_status bl_safetensors_expect(const bl_safetensors *st, const char *file, const char *name,
                                int ndim, const int64_t *shape, const bl_st_tensor **out);
/* Copy tensor `name` (F32, F64, I32 or I64) into dst (bl_real), converting; the shapes must be
 * equal (dims of dst), else BL_ERR_FORMAT. Integers beyond 2^24 lose precision in float. */
bl_status bl_safetensors_read_into(const bl_safetensors *st, const char *file, const char *name,
                                   bl_tensor *dst);

/* Serialise; BL_ERR_IO naming the path on any failure (nothing left under `path`). */
bl_status bl_safetensors_write(const bl_safetensors *st, const char *path);
/* Parse a whole file; *out = NULL on error. */
bl_status bl_safetensors_read(bl_safetensors **out, const char *path);
/* Parse from memory (`what` names the source in messages). */
bl_status bl_safetensors_parse(bl_safetensors **out, const void *bytes, size_t n, const char *what);

#endif
