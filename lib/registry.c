/* The registry helper (lib/registry.h). */
#include "lib/registry.h"

#include <stdio.h>
#include <string.h>

int bl_registry_count(const bl_registry *r) { return r->n_builtins + r->n_extra; }

const void *bl_registry_at(const bl_registry *r, int i)
{
    BL_ASSERT(i >= 0 && i < bl_registry_count(r), "bl_registry_at: %s %d of %d", r->what, i,
              bl_registry_count(r));
    return i < r->n_builtins ? r->builtins[i] : r->extra[i - r->n_builtins];
}

const void *bl_registry_find(const bl_registry *r, const char *name)
{
    if (!name) return NULL;
    for (int i = 0; i < bl_registry_count(r); i++) {
        const void *item = bl_registry_at(r, i);
        if (strcmp(r->name_of(item), name) == 0) return item;
    }
    return NULL;
}

bl_status bl_registry_add(bl_registry *r, const void *item)
{
    const char *name = item ? r->name_of(item) : NULL;
    if (!name || !name[0]) return bl_error(BL_ERR_ARG, "%s: the descriptor has no name", r->what);
    const void *old = bl_registry_find(r, name);
    if (old == item) return BL_OK;
    if (old) return bl_error(BL_ERR_ARG, "%s '%s' is already registered (another descriptor)", r->what, name);
    if (r->n_extra >= r->cap)
        return bl_error(BL_ERR_ARG, "%s '%s': the table is full (%d registered)", r->what, name, r->cap);
    r->extra[r->n_extra++] = item;
    return BL_OK;
}

void bl_registry_names(const bl_registry *r, char *buf, size_t n)
{
    size_t used = 0;
    if (n) buf[0] = 0;
    for (int i = 0; i < bl_registry_count(r) && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", r->name_of(bl_registry_at(r, i)));
}

void bl_registry_reset(bl_registry *r) { r->n_extra = 0; }
