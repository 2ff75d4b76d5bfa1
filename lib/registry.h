/* A registry: one process-wide table of named descriptors (distribution kinds, prior sampler
 * kinds, catalog fields, factor masks), the one place where "a user adds a kind with one
 * call" is implemented.
 *
 * A registry is a static object: a list of built-in descriptors fixed at compile time plus
 * storage for registered ones. Items are pointers the registry does not copy (usually to a
 * `static const` descriptor); names come from the owner's `name_of`. Built-ins come first,
 * then registered items in registration order; index i is stable once registered.
 *
 *   static const void *const builtins[] = {&kind_a, &kind_b};
 *   static const void *extra[64];
 *   static bl_registry kinds = BL_REGISTRY_INIT("distribution kind", builtins, extra, name_of);
 *
 * Thread rule: register before worker threads start (at start-up, or while reading a config);
 * after that find/count/at only read and may run on any thread. Nothing is locked. */
#ifndef BL_REGISTRY_H
#define BL_REGISTRY_H

#include <stddef.h>

#include "lib/error.h"

typedef struct bl_registry {
    const char *what;               /* "distribution kind": used in messages */
    const void *const *builtins;    /* compile-time entries */
    int n_builtins;
    const void **extra;             /* registered entries, capacity cap */
    int cap, n_extra;
    const char *(*name_of)(const void *item);
} bl_registry;

#define BL_REGISTRY_INIT(what_, builtins_, extra_, name_of_)                                  \
    {.what = (what_), .builtins = (builtins_),                                                \
     .n_builtins = (int)(sizeof(builtins_) / sizeof((builtins_)[0])), .extra = (extra_),      \
     .cap = (int)(sizeof(extra_) / sizeof((extra_)[0])), .n_extra = 0, .name_of = (name_of_)}

/* Append `item`. Registering the same pointer again is a no-op; another item of a taken name
 * ("<what> 'x' is already registered (another descriptor)"), an item without a name, or a
 * full table is BL_ERR_ARG. Validating the descriptor itself is the owner's job. */
bl_status bl_registry_add(bl_registry *r, const void *item);
/* The item named `name` (NULL name or unknown: NULL). */
const void *bl_registry_find(const bl_registry *r, const char *name);
int bl_registry_count(const bl_registry *r);
/* Item i of bl_registry_count (aborts outside). */
const void *bl_registry_at(const bl_registry *r, int i);
/* "a, b, c": the names, for "unknown kind 'x' (known: ...)" messages; truncated to n. */
void bl_registry_names(const bl_registry *r, char *buf, size_t n);
/* Forget the registered items, keep the built-ins (tests). */
void bl_registry_reset(bl_registry *r);

#endif
