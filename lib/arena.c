#include "lib/arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"

#define BL_ARENA_ALIGN 64

typedef struct bl_arena_block {
    struct bl_arena_block *prev;
    size_t size, used;
    unsigned char *base; /* aligned start of the usable memory */
} bl_arena_block;

struct bl_arena {
    bl_arena_block *head;
    size_t used_before_head; /* bytes used in the older blocks of the chain */
    size_t peak;
};

static bl_arena_block *bl_arena_block_alloc(size_t size, bl_arena_block *prev)
{
    bl_arena_block *b = bl_malloc(sizeof *b);
    b->base = aligned_alloc(BL_ARENA_ALIGN, (size + BL_ARENA_ALIGN - 1) / BL_ARENA_ALIGN * BL_ARENA_ALIGN);
    if (!b->base) {
        /* the working memory of a step cannot grow: a user's setting (batch, image size,
         * widths) asks for more than the machine has, not a programmer error */
        fprintf(stderr, "bliss: error: out of memory: needs ~%.3g GiB more working memory; reduce "
                "prior.batch_size (the batch), the image size or the network widths\n",
                (double)size / (1024.0 * 1024.0 * 1024.0));
        exit(1);
    }
    b->size = size;
    b->used = 0;
    b->prev = prev;
    return b;
}

bl_arena *bl_arena_alloc(size_t initial_bytes)
{
    bl_arena *a = bl_calloc(1, sizeof *a);
    a->head = bl_arena_block_alloc(initial_bytes < 4096 ? 4096 : initial_bytes, NULL);
    return a;
}

void bl_arena_free(bl_arena *arena)
{
    if (!arena) return;
    for (bl_arena_block *b = arena->head; b;) {
        bl_arena_block *p = b->prev;
        free(b->base);
        free(b);
        b = p;
    }
    free(arena);
}

void *bl_arena_push(bl_arena *arena, size_t bytes)
{
    size_t need = (bytes + BL_ARENA_ALIGN - 1) / BL_ARENA_ALIGN * BL_ARENA_ALIGN;
    if (need == 0) need = BL_ARENA_ALIGN;
    bl_arena_block *b = arena->head;
    if (b->used + need > b->size) {
        size_t size = b->size * 2 > need ? b->size * 2 : need;
        arena->used_before_head += b->used;
        b = arena->head = bl_arena_block_alloc(size, b);
    }
    void *p = b->base + b->used;
    b->used += need;
    size_t used = arena->used_before_head + b->used;
    if (used > arena->peak) arena->peak = used;
    return p;
}

void *bl_arena_push_zero(bl_arena *arena, size_t bytes)
{
    void *p = bl_arena_push(arena, bytes);
    memset(p, 0, bytes);
    return p;
}

void bl_arena_reset(bl_arena *arena)
{
    bl_arena_block *b = arena->head;
    if (b->prev) { /* merge the chain into one block sized for the peak */
        size_t total = 0;
        for (bl_arena_block *c = b; c;) {
            bl_arena_block *p = c->prev;
            total += c->size;
            free(c->base);
            free(c);
            c = p;
        }
        arena->head = bl_arena_block_alloc(total, NULL);
    } else {
        b->used = 0;
    }
    arena->used_before_head = 0;
}

void bl_arena_release(bl_arena *arena, size_t mark)
{
    BL_ASSERT(mark <= bl_arena_used(arena), "bl_arena_release: mark %zu is past the %zu bytes in use",
              mark, bl_arena_used(arena));
    /* every allocation in the head block is newer than a mark that lies in an older block */
    arena->head->used = mark >= arena->used_before_head ? mark - arena->used_before_head : 0;
}

size_t bl_arena_used(const bl_arena *arena) { return arena->used_before_head + arena->head->used; }
size_t bl_arena_peak(const bl_arena *arena) { return arena->peak; }
