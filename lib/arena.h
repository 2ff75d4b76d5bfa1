/* Arena: bump allocator for per-step memory (activations, tape nodes, temporaries).
 * Allocations are 64-byte aligned and live until bl_arena_reset. When a block is full a new
 * one is chained; on reset the chain is merged into one block large enough for the peak, so
 * after the first step a training loop allocates nothing from the system. */
#ifndef BL_ARENA_H
#define BL_ARENA_H

#include <stddef.h>

typedef struct bl_arena bl_arena;

bl_arena *bl_arena_alloc(size_t initial_bytes);
void bl_arena_free(bl_arena *arena);
/* Uninitialised memory, 64-byte aligned. */
void *bl_arena_push(bl_arena *arena, size_t bytes);
/* Zeroed memory, 64-byte aligned. */
void *bl_arena_push_zero(bl_arena *arena, size_t bytes);
/* Forget every allocation. */
void bl_arena_reset(bl_arena *arena);
/* Forget the allocations made since `mark`, a value of bl_arena_used taken earlier: scratch
 * memory used in stack order (an op's im2col buffers) is reused by the next op instead of
 * growing the arena until the step ends. Blocks chained since the mark stay allocated until
 * bl_arena_reset merges them. */
void bl_arena_release(bl_arena *arena, size_t mark);
size_t bl_arena_used(const bl_arena *arena);
/* Largest `used` seen since the arena was made. */
size_t bl_arena_peak(const bl_arena *arena);
/* Bytes of the blocks the arena holds (its reserved address space; the resident memory is at
 * most this and at least the peak touched since the last reset). */
size_t bl_arena_reserved(const bl_arena *arena);
/* 1 if p points into one of the arena's blocks. */
int bl_arena_owns(const bl_arena *arena, const void *p);

#endif
