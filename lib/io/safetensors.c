#include "lib/io/safetensors.h"

#include "lib/io/atomic_file.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lib/io/safetensors.c assumes a little-endian host (the file format is little-endian)"
#endif

/* A header larger than this is certainly not ours (the reference implementation caps at
 * 100 MB as well); it also bounds the allocation a corrupt length prefix can trigger. */
#define BL_ST_MAX_HEADER ((uint64_t)100 * 1024 * 1024)

size_t bl_dtype_size(bl_dtype dtype)
{
    switch (dtype) {
    case BL_DTYPE_F32: case BL_DTYPE_I32: return 4;
    case BL_DTYPE_F64: case BL_DTYPE_I64: return 8;
    }
    bl_abort(__FILE__, __LINE__, "bl_dtype_size: invalid dtype %d", (int)dtype);
}

const char *bl_dtype_name(bl_dtype dtype)
{
    switch (dtype) {
    case BL_DTYPE_F32: return "F32";
    case BL_DTYPE_F64: return "F64";
    case BL_DTYPE_I32: return "I32";
    case BL_DTYPE_I64: return "I64";
    }
    bl_abort(__FILE__, __LINE__, "bl_dtype_name: invalid dtype %d", (int)dtype);
}

static int bl_dtype_parse(const char *s, bl_dtype *out)
{
    static const bl_dtype all[] = {BL_DTYPE_F32, BL_DTYPE_F64, BL_DTYPE_I32, BL_DTYPE_I64};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (strcmp(s, bl_dtype_name(all[i])) == 0) {
            *out = all[i];
            return 1;
        }
    return 0;
}

bl_safetensors *bl_safetensors_alloc(void) { return bl_calloc(1, sizeof(bl_safetensors)); }

void bl_safetensors_free(bl_safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->n; i++) {
        free(st->tensors[i].name);
        free(st->tensors[i].data);
    }
    free(st->tensors);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st);
}

const bl_st_tensor *bl_safetensors_find(const bl_safetensors *st, const char *name)
{
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

/* Append a tensor whose data buffer is taken over (not copied). */
static bl_status bl_safetensors_push(bl_safetensors *st, const char *name, bl_dtype dtype, int ndim,
                                     const int64_t *shape, void *data)
{
    if (!name || !*name) return bl_error(BL_ERR_ARG, "safetensors: empty tensor name");
    if (strcmp(name, "__metadata__") == 0)
        return bl_error(BL_ERR_ARG, "safetensors: '__metadata__' is reserved, not a tensor name");
    if (bl_safetensors_find(st, name))
        return bl_error(BL_ERR_ARG, "safetensors: tensor '%s' added twice", name);
    if (ndim < 0 || ndim > BL_ST_MAX_DIMS)
        return bl_error(BL_ERR_ARG, "safetensors: tensor '%s' has %d dims (at most %d)", name, ndim,
                        BL_ST_MAX_DIMS);
    if (st->n == st->cap) {
        st->cap = st->cap ? 2 * st->cap : 16;
        st->tensors = bl_realloc(st->tensors, (size_t)st->cap * sizeof *st->tensors);
    }
    bl_st_tensor *t = &st->tensors[st->n++];
    memset(t, 0, sizeof *t);
    t->name = bl_strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= shape[i];
    }
    t->data = data;
    return BL_OK;
}

bl_status bl_safetensors_add(bl_safetensors *st, const char *name, bl_dtype dtype, int ndim,
                             const int64_t *shape, const void *data)
{
    int64_t numel = 1;
    for (int i = 0; i < ndim && i < BL_ST_MAX_DIMS; i++) {
        if (shape[i] < 0)
            return bl_error(BL_ERR_ARG, "safetensors: tensor '%s' has negative size in dim %d",
                            name ? name : "", i);
        numel *= shape[i];
    }
    size_t bytes = (size_t)numel * bl_dtype_size(dtype);
    void *copy = bl_malloc(bytes);
    if (bytes) memcpy(copy, data, bytes);
    bl_status s = bl_safetensors_push(st, name, dtype, ndim, shape, copy);
    if (s != BL_OK) free(copy);
    return s;
}

bl_status bl_safetensors_add_tensor(bl_safetensors *st, const char *name, const bl_tensor *t,
                                    bl_dtype dtype)
{
    BL_ASSERT(dtype == BL_DTYPE_F32 || dtype == BL_DTYPE_F64,
              "bl_safetensors_add_tensor: '%s': a bl_real tensor is stored as F32 or F64", name);
    void *buf = bl_malloc((size_t)t->numel * bl_dtype_size(dtype));
    if (dtype == BL_DTYPE_F32)
        for (int64_t i = 0; i < t->numel; i++) ((float *)buf)[i] = (float)t->data[i];
    else
        for (int64_t i = 0; i < t->numel; i++) ((double *)buf)[i] = (double)t->data[i];
    bl_status s = bl_safetensors_push(st, name, dtype, t->ndim, t->shape, buf);
    if (s != BL_OK) free(buf);
    return s;
}

void bl_safetensors_set_meta(bl_safetensors *st, const char *key, const char *value)
{
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) {
            free(st->meta_values[i]);
            st->meta_values[i] = bl_strdup(value);
            return;
        }
    if (st->n_meta == st->cap_meta) {
        st->cap_meta = st->cap_meta ? 2 * st->cap_meta : 8;
        st->meta_keys = bl_realloc(st->meta_keys, (size_t)st->cap_meta * sizeof(char *));
        st->meta_values = bl_realloc(st->meta_values, (size_t)st->cap_meta * sizeof(char *));
    }
    st->meta_keys[st->n_meta] = bl_strdup(key);
    st->meta_values[st->n_meta] = bl_strdup(value);
    st->n_meta++;
}

const char *bl_safetensors_meta(const bl_safetensors *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

static void bl_shape_format(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++) {
        if (shape[i] < 0)
            k += (size_t)snprintf(buf + k, n - k, i ? ", *" : "*");
        else
            k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    }
    if (k < n) snprintf(buf + k, n - k, ndim == 1 ? ",)" : ")");
}

bl_status bl_safetensors_expect(const bl_safetensors *st, const char *file, const char *name,
                                int ndim, const int64_t *shape, const bl_st_tensor **out)
{
    const char *f = file ? file : "safetensors";
    const bl_st_tensor *t = bl_safetensors_find(st, name);
    if (out) *out = t;
    if (!t) return bl_error(BL_ERR_FORMAT, "%s: no tensor '%s'", f, name);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (!ok) {
        char have[256], want[256];
        bl_shape_format(t->ndim, t->shape, have, sizeof have);
        bl_shape_format(ndim, shape, want, sizeof want);
        if (out) *out = NULL;
        return bl_error(BL_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", f, name, have, want);
    }
    return BL_OK;
}

bl_status bl_safetensors_read_into(const bl_safetensors *st, const char *file, const char *name,
                                   bl_tensor *dst)
{
    const bl_st_tensor *t;
    bl_status s = bl_safetensors_expect(st, file, name, dst->ndim, dst->shape, &t);
    if (s != BL_OK) return s;
    for (int64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case BL_DTYPE_F32: dst->data[i] = (bl_real)((const float *)t->data)[i]; break;
        case BL_DTYPE_F64: dst->data[i] = (bl_real)((const double *)t->data)[i]; break;
        case BL_DTYPE_I32: dst->data[i] = (bl_real)((const int32_t *)t->data)[i]; break;
        case BL_DTYPE_I64: dst->data[i] = (bl_real)((const int64_t *)t->data)[i]; break;
        }
    }
    return BL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                     */

static json_t *bl_safetensors_header(const bl_safetensors *st)
{
    json_t *root = json_object();
    if (st->n_meta) {
        json_t *meta = json_object();
        for (int i = 0; i < st->n_meta; i++)
            json_object_set_new(meta, st->meta_keys[i], json_string(st->meta_values[i]));
        json_object_set_new(root, "__metadata__", meta);
    }
    uint64_t off = 0;
    for (int i = 0; i < st->n; i++) {
        const bl_st_tensor *t = &st->tensors[i];
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        uint64_t bytes = (uint64_t)t->numel * bl_dtype_size(t->dtype);
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + bytes)));
        off += bytes;
        json_object_set_new(e, "dtype", json_string(bl_dtype_name(t->dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(root, t->name, e);
    }
    return root;
}

bl_status bl_safetensors_write(const bl_safetensors *st, const char *path)
{
    json_t *root = bl_safetensors_header(st);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    BL_ASSERT(text, "bl_safetensors_write: json_dumps failed (out of memory)");
    size_t len = strlen(text);
    size_t padded = (len + 7) / 8 * 8;

    bl_atomic_file af;
    bl_status s = bl_atomic_open(&af, path, "wb");
    if (s != BL_OK) {
        free(text);
        return s;
    }
    uint64_t hlen = padded; /* little-endian host: the bytes are already in file order */
    int ok = fwrite(&hlen, 8, 1, af.f) == 1 && fwrite(text, 1, len, af.f) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', af.f) != EOF;
    free(text);
    for (int i = 0; ok && i < st->n; i++) {
        const bl_st_tensor *t = &st->tensors[i];
        size_t bytes = (size_t)t->numel * bl_dtype_size(t->dtype);
        ok = bytes == 0 || fwrite(t->data, 1, bytes, af.f) == bytes;
    }
    if (!ok) {
        bl_atomic_abort(&af);
        return bl_error(BL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return bl_atomic_commit(&af);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading                                                                                     */

typedef struct { int64_t begin, end; int index; } bl_st_span;

static int bl_span_cmp(const void *a, const void *b)
{
    const bl_st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

/* Parse one tensor entry `e` named `name`; fills *t (data NULL) and its byte span. */
static bl_status bl_st_parse_entry(const char *what, const char *name, json_t *e, int64_t buflen,
                                   bl_st_tensor *t, bl_st_span *span)
{
    if (!json_is_object(e))
        return bl_error(BL_ERR_FORMAT, "%s: header entry '%s' is not an object", what, name);
    json_t *dt = json_object_get(e, "dtype"), *shape = json_object_get(e, "shape"),
           *offs = json_object_get(e, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs))
        return bl_error(BL_ERR_FORMAT,
                        "%s: tensor '%s' needs string 'dtype', array 'shape' and 'data_offsets'",
                        what, name);
    if (json_object_size(e) != 3)
        return bl_error(BL_ERR_FORMAT, "%s: tensor '%s' has unexpected keys in its header entry",
                        what, name);
    if (!bl_dtype_parse(json_string_value(dt), &t->dtype))
        return bl_error(BL_ERR_FORMAT, "%s: tensor '%s' has dtype '%s' (supported: F32, F64, I32, I64)",
                        what, name, json_string_value(dt));
    size_t nd = json_array_size(shape);
    if (nd > BL_ST_MAX_DIMS)
        return bl_error(BL_ERR_FORMAT, "%s: tensor '%s' has %zu dims (at most %d)", what, name, nd,
                        BL_ST_MAX_DIMS);
    t->ndim = (int)nd;
    t->numel = 1;
    const int64_t limit = INT64_MAX / 8;
    for (size_t i = 0; i < nd; i++) {
        json_t *v = json_array_get(shape, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return bl_error(BL_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                            what, name, i);
        t->shape[i] = json_integer_value(v);
        if (t->shape[i] && t->numel > limit / t->shape[i])
            return bl_error(BL_ERR_FORMAT, "%s: tensor '%s': shape overflows", what, name);
        t->numel *= t->shape[i];
    }
    if (json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return bl_error(BL_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end]", what, name);
    span->begin = json_integer_value(json_array_get(offs, 0));
    span->end = json_integer_value(json_array_get(offs, 1));
    if (span->begin < 0 || span->end < span->begin || span->end > buflen)
        return bl_error(BL_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%lld, %lld] outside the %lld-byte data "
                        "section (file truncated?)",
                        what, name, (long long)span->begin, (long long)span->end, (long long)buflen);
    int64_t want = t->numel * (int64_t)bl_dtype_size(t->dtype);
    if (span->end - span->begin != want)
        return bl_error(BL_ERR_FORMAT, "%s: tensor '%s': %lld bytes of data for %lld x %s (%lld bytes)",
                        what, name, (long long)(span->end - span->begin), (long long)t->numel,
                        bl_dtype_name(t->dtype), (long long)want);
    return BL_OK;
}

static bl_status bl_st_parse_meta(const char *what, json_t *meta, bl_safetensors *st)
{
    if (!json_is_object(meta))
        return bl_error(BL_ERR_FORMAT, "%s: '__metadata__' is not an object", what);
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return bl_error(BL_ERR_FORMAT, "%s: metadata '%s' is not a string", what, k);
        bl_safetensors_set_meta(st, k, json_string_value(v));
    }
    return BL_OK;
}

bl_status bl_safetensors_parse(bl_safetensors **out, const void *bytes, size_t n, const char *what)
{
    *out = NULL;
    const unsigned char *p = bytes;
    if (n < 8)
        return bl_error(BL_ERR_FORMAT, "%s: %zu bytes, too short for a safetensors file (truncated?)",
                        what, n);
    uint64_t hlen;
    memcpy(&hlen, p, 8);
    if (hlen > BL_ST_MAX_HEADER || hlen > n - 8)
        return bl_error(BL_ERR_FORMAT,
                        "%s: header length %llu exceeds the file (%zu bytes): truncated or not a "
                        "safetensors file",
                        what, (unsigned long long)hlen, n);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return bl_error(BL_ERR_FORMAT, "%s: header is not valid JSON (byte %d: %s)", what,
                        jerr.position, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return bl_error(BL_ERR_FORMAT, "%s: header is not a JSON object", what);
    }
    int64_t buflen = (int64_t)(n - 8 - hlen);
    const unsigned char *buf = p + 8 + hlen;
    bl_safetensors *st = bl_safetensors_alloc();
    size_t cap = json_object_size(root);
    bl_st_span *spans = bl_calloc(cap ? cap : 1, sizeof *spans);
    bl_st_tensor *tmp = bl_calloc(cap ? cap : 1, sizeof *tmp);
    char **names = bl_calloc(cap ? cap : 1, sizeof *names);
    int nt = 0;
    bl_status s = BL_OK;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            s = bl_st_parse_meta(what, val, st);
        } else {
            s = bl_st_parse_entry(what, key, val, buflen, &tmp[nt], &spans[nt]);
            if (s == BL_OK) {
                names[nt] = bl_strdup(key);
                spans[nt].index = nt;
                nt++;
            }
        }
        if (s != BL_OK) break;
    }
    if (s == BL_OK) {
        /* the data section must be covered exactly, without overlap or holes */
        qsort(spans, (size_t)nt, sizeof *spans, bl_span_cmp);
        int64_t at = 0;
        for (int i = 0; i < nt && s == BL_OK; i++) {
            if (spans[i].begin != at)
                s = bl_error(BL_ERR_FORMAT, "%s: tensor '%s' starts at byte %lld, expected %lld "
                             "(overlapping tensors or a hole in the data section)",
                             what, names[spans[i].index], (long long)spans[i].begin, (long long)at);
            at = spans[i].end;
        }
        if (s == BL_OK && at != buflen)
            s = bl_error(BL_ERR_FORMAT, "%s: data section has %lld bytes, tensors use %lld", what,
                         (long long)buflen, (long long)at);
    }
    for (int i = 0; i < nt && s == BL_OK; i++) {
        /* file order */
        const bl_st_span *sp = &spans[i];
        bl_st_tensor *t = &tmp[sp->index];
        size_t nbytes = (size_t)(sp->end - sp->begin);
        void *data = bl_malloc(nbytes);
        if (nbytes) memcpy(data, buf + sp->begin, nbytes);
        s = bl_safetensors_push(st, names[sp->index], t->dtype, t->ndim, t->shape, data);
        if (s != BL_OK) free(data);
    }
    for (int i = 0; i < nt; i++) free(names[i]);
    free(names);
    free(tmp);
    free(spans);
    json_decref(root);
    if (s != BL_OK) {
        bl_safetensors_free(st);
        return s;
    }
    *out = st;
    return BL_OK;
}

bl_status bl_safetensors_read(bl_safetensors **out, const char *path)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return bl_error(BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* a directory (or a device) opens too; only a regular file has a size to read */
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return bl_error(BL_ERR_IO, "%s: not a regular file", path);
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return bl_error(BL_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    }
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return bl_error(BL_ERR_IO, "%s: cannot determine the file size", path);
    }
    unsigned char *bytes = bl_malloc((size_t)size);
    size_t got = fread(bytes, 1, (size_t)size, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != (size_t)size) {
        free(bytes);
        return bl_error(BL_ERR_IO, "%s: read failed", path);
    }
    bl_status s = bl_safetensors_parse(out, bytes, (size_t)size, path);
    free(bytes);
    return s;
}
