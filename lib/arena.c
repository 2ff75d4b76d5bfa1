#include "lib/arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/error.h"

#define BL_ARENA_ALIGN 64

/* Blocks of at least BL_ARENA_HUGE bytes are anonymous mappings aligned to 2 MiB with
 * madvise(MADV_HUGEPAGE): a step's activations (gigabytes at batch 64) then take one page fault
 * and one TLB entry per 2 MiB instead of per 4 KiB. Where the kernel has no transparent huge
 * pages the advice is ignored and the block is an ordinary mapping. */
#define BL_ARENA_HUGE ((size_t)2 << 20)

typedef struct bl_arena_block {
    struct bl_arena_block *prev;
    size_t size, used;
    unsigned char *base; /* aligned start of the usable memory */
    void *map;           /* the mapping (NULL: base came from aligned_alloc) */
    size_t map_len;
} bl_arena_block;

/* size bytes at base, 2 MiB aligned; NULL when the system refuses */
static unsigned char *bl_arena_map(size_t size, void **map, size_t *map_len)
{
    size_t len = size + BL_ARENA_HUGE;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    unsigned char *base = (unsigned char *)(((uintptr_t)p + BL_ARENA_HUGE - 1) & ~(uintptr_t)(BL_ARENA_HUGE - 1));
    (void)madvise(base, size, MADV_HUGEPAGE); /* advice only: without THP it simply has no effect */
    *map = p;
    *map_len = len;
    return base;
}

static void bl_arena_block_release(bl_arena_block *b)
{
    if (b->map) munmap(b->map, b->map_len);
    else free(b->base);
    free(b);
}

struct bl_arena {
    bl_arena_block *head;
    size_t used_before_head; /* bytes used in the older blocks of the chain */
    size_t peak;
};

static bl_arena_block *bl_arena_block_alloc(size_t size, bl_arena_block *prev)
{
    bl_arena_block *b = bl_malloc(sizeof *b);
    b->map = NULL;
    b->map_len = 0;
    if (size >= BL_ARENA_HUGE) {
        size = (size + BL_ARENA_HUGE - 1) / BL_ARENA_HUGE * BL_ARENA_HUGE;
        b->base = bl_arena_map(size, &b->map, &b->map_len);
    } else {
        b->base = aligned_alloc(BL_ARENA_ALIGN, (size + BL_ARENA_ALIGN - 1) / BL_ARENA_ALIGN * BL_ARENA_ALIGN);
    }
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
        bl_arena_block_release(b);
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
            bl_arena_block_release(c);
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

size_t bl_arena_reserved(const bl_arena *arena)
{
    size_t n = 0;
    for (const bl_arena_block *b = arena->head; b; b = b->prev) n += b->size;
    return n;
}

int bl_arena_owns(const bl_arena *arena, const void *p)
{
    const uintptr_t c = (uintptr_t)p;
    for (const bl_arena_block *b = arena->head; b; b = b->prev)
        if (c >= (uintptr_t)b->base && c - (uintptr_t)b->base < b->size) return 1;
    return 0;
}
