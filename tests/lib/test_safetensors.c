/* safetensors (lib/io/safetensors.h): bit-exact round trips, the exact bytes of a small file
 * worked out by hand from the format description, and every kind of damaged file. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/io/safetensors.h"
#include "tests/bl_check.h"

static char tmpdir[256];

static void setup(void) { bl_check_tmpdir(tmpdir, sizeof tmpdir, "bl_test_st"); }
static void teardown(void) { bl_check_tmpdir_remove(tmpdir); }

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

static size_t read_all(const char *path, unsigned char **out)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(*out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return (size_t)n;
}

static void write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* a file: 8-byte little-endian header length, header, data */
static size_t make_file(unsigned char *buf, const char *header, const void *data, size_t ndata)
{
    uint64_t h = strlen(header);
    memcpy(buf, &h, 8);
    memcpy(buf + 8, header, h);
    if (ndata) memcpy(buf + 8 + h, data, ndata);
    return 8 + h + ndata;
}

START_TEST(test_round_trip_bit_exact)
{
    char path[300];
    path_of(path, sizeof path, "rt.safetensors");
    /* awkward float values: -0, denormal, NaN with payload, infinities, extremes */
    uint32_t fbits[6] = {0x80000000u, 0x00000001u, 0x7fc12345u, 0x7f800000u, 0xff800000u, 0x7f7fffffu};
    uint64_t dbits[3] = {0x8000000000000000ull, 0x7ff8000000000123ull, 0x0000000000000001ull};
    int32_t i32[4] = {INT32_MIN, -1, 0, INT32_MAX};
    int64_t i64[2] = {INT64_MIN, INT64_MAX};
    double scalar = 3.25;
    bl_safetensors *st = bl_safetensors_alloc();
    ck_assert_int_eq(bl_safetensors_add(st, "f", BL_DTYPE_F32, 2, BL_SHAPE(2, 3), fbits), BL_OK);
    ck_assert_int_eq(bl_safetensors_add(st, "d", BL_DTYPE_F64, 1, BL_SHAPE(3), dbits), BL_OK);
    ck_assert_int_eq(bl_safetensors_add(st, "a.b.i32", BL_DTYPE_I32, 3, BL_SHAPE(1, 2, 2), i32), BL_OK);
    ck_assert_int_eq(bl_safetensors_add(st, "i64", BL_DTYPE_I64, 1, BL_SHAPE(2), i64), BL_OK);
    ck_assert_int_eq(bl_safetensors_add(st, "scalar", BL_DTYPE_F64, 0, NULL, &scalar), BL_OK);
    ck_assert_int_eq(bl_safetensors_add(st, "empty", BL_DTYPE_F32, 2, BL_SHAPE(0, 4), NULL), BL_OK);
    bl_safetensors_set_meta(st, "step", "12");
    bl_safetensors_set_meta(st, "note", "quote \" and unicode \xc3\xa9");
    ck_assert_int_eq(bl_safetensors_write(st, path), BL_OK);
    bl_safetensors_free(st);

    bl_safetensors *rd;
    ck_assert_int_eq(bl_safetensors_read(&rd, path), BL_OK);
    ck_assert_int_eq(rd->n, 6);
    const bl_st_tensor *t = bl_safetensors_find(rd, "f");
    ck_assert_int_eq(t->dtype, BL_DTYPE_F32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[1], 3);
    ck_assert_int_eq(memcmp(t->data, fbits, sizeof fbits), 0);
    t = bl_safetensors_find(rd, "d");
    ck_assert_int_eq(memcmp(t->data, dbits, sizeof dbits), 0);
    t = bl_safetensors_find(rd, "a.b.i32");
    ck_assert_int_eq(t->dtype, BL_DTYPE_I32);
    ck_assert_int_eq(memcmp(t->data, i32, sizeof i32), 0);
    t = bl_safetensors_find(rd, "i64");
    ck_assert_int_eq(memcmp(t->data, i64, sizeof i64), 0);
    t = bl_safetensors_find(rd, "scalar");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_int_eq(t->numel, 1);
    ck_assert_double_eq(*(double *)t->data, 3.25);
    t = bl_safetensors_find(rd, "empty");
    ck_assert_int_eq(t->numel, 0);
    ck_assert_str_eq(bl_safetensors_meta(rd, "step"), "12");
    ck_assert_str_eq(bl_safetensors_meta(rd, "note"), "quote \" and unicode \xc3\xa9");
    /* insertion order is file order */
    ck_assert_str_eq(rd->tensors[0].name, "f");
    ck_assert_str_eq(rd->tensors[5].name, "empty");
    bl_safetensors_free(rd);
    /* no temporary left behind */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 1", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_exact_bytes)
{
    /* header {"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}
     * is 26 + 4 + 15 + 12 + 20 + 2 = 79 bytes; padded with 1 space to 80; then 1.0f, -2.0f
     * little-endian */
    const char *json = "{\"__metadata__\":{\"k\":\"v\"},\"x\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}}";
    ck_assert_uint_eq(strlen(json), 79);
    unsigned char want[8 + 80 + 8];
    uint64_t hlen = 80;
    memcpy(want, &hlen, 8);
    memcpy(want + 8, json, 79);
    want[8 + 79] = ' ';
    const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    memcpy(want + 88, data, 8);

    char path[300];
    path_of(path, sizeof path, "exact.safetensors");
    float x[2] = {1.0f, -2.0f};
    bl_safetensors *st = bl_safetensors_alloc();
    bl_safetensors_set_meta(st, "k", "v");
    ck_assert_int_eq(bl_safetensors_add(st, "x", BL_DTYPE_F32, 1, BL_SHAPE(2), x), BL_OK);
    ck_assert_int_eq(bl_safetensors_write(st, path), BL_OK);
    bl_safetensors_free(st);
    unsigned char *got;
    size_t n = read_all(path, &got);
    ck_assert_uint_eq(n, sizeof want);
    ck_assert_int_eq(memcmp(got, want, n), 0);
    free(got);
}
END_TEST

START_TEST(test_parse_foreign_order)
{
    /* header lists "b" first although its data comes second; no padding; int and float data */
    const char *h = "{\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[4,12]},"
                    "\"a\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}";
    unsigned char data[12];
    int32_t a = -7;
    int64_t b = 1234567890123ll;
    memcpy(data, &a, 4);
    memcpy(data + 4, &b, 8);
    unsigned char buf[512];
    size_t n = make_file(buf, h, data, 12);
    bl_safetensors *st;
    ck_assert_int_eq(bl_safetensors_parse(&st, buf, n, "mem"), BL_OK);
    ck_assert_str_eq(st->tensors[0].name, "a"); /* file order */
    ck_assert_int_eq(*(int32_t *)bl_safetensors_find(st, "a")->data, -7);
    ck_assert_int_eq(*(int64_t *)bl_safetensors_find(st, "b")->data, 1234567890123ll);
    /* conversion into a bl_real tensor and shape checks */
    bl_tensor *t = bl_tensor_alloc(NULL, 1, BL_SHAPE(1), 0);
    ck_assert_int_eq(bl_safetensors_read_into(st, "mem", "b", t), BL_OK);
    ck_assert_double_eq_tol(t->data[0], 1234567890123.0, 1e6);
    bl_tensor_free(t);
    t = bl_tensor_alloc(NULL, 1, BL_SHAPE(2), 0);
    ck_assert_int_eq(bl_safetensors_read_into(st, "mem", "b", t), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "tensor 'b' has shape (1,), expected (2,)"));
    bl_tensor_free(t);
    const bl_st_tensor *e;
    ck_assert_int_eq(bl_safetensors_expect(st, "mem", "zz", 1, BL_SHAPE(1), &e), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "no tensor 'zz'"));
    ck_assert_int_eq(bl_safetensors_expect(st, "mem", "b", 1, BL_SHAPE(-1), &e), BL_OK);
    bl_safetensors_free(st);
}
END_TEST

static void expect_format_error(const char *header, const void *data, size_t ndata, const char *needle)
{
    unsigned char buf[2048];
    size_t n = make_file(buf, header, data, ndata);
    bl_safetensors *st = (bl_safetensors *)1;
    bl_status s = bl_safetensors_parse(&st, buf, n, "bad.safetensors");
    ck_assert_msg(s == BL_ERR_FORMAT, "header %s: status %d", header, s);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(bl_error_message(), needle) != NULL, "message '%s' lacks '%s'",
                  bl_error_message(), needle);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "bad.safetensors"));
}

START_TEST(test_corrupt_headers)
{
    unsigned char d[16] = {0};
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", d, 8, "not valid JSON");
    expect_format_error("[1,2]", d, 0, "not a JSON object");
    expect_format_error("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", d, 4, "dtype 'BF16'");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", d, 8, "shape[0]");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", d, 8, "8 bytes of data for 3 x F32");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", d, 8, "outside the 8-byte data");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", d, 12, "overlapping");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d, 8, "hole");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", d, 8, "data section has 8 bytes, tensors use 4");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d, 8, "not valid JSON");
    expect_format_error("{\"a\":7}", d, 0, "not an object");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", d, 4, "data_offsets");
    expect_format_error("{\"__metadata__\":{\"k\":3}}", d, 0, "metadata 'k' is not a string");
    expect_format_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}",
                        d, 4, "overflows");
    /* header length beyond the file */
    unsigned char buf[16];
    uint64_t big = 1ull << 40;
    memcpy(buf, &big, 8);
    bl_safetensors *st;
    ck_assert_int_eq(bl_safetensors_parse(&st, buf, 16, "len"), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "exceeds the file"));
    ck_assert_int_eq(bl_safetensors_parse(&st, buf, 5, "short"), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "too short"));
}
END_TEST

START_TEST(test_truncated_and_flipped_files)
{
    char path[300], cut[300];
    path_of(path, sizeof path, "full.safetensors");
    path_of(cut, sizeof cut, "cut.safetensors");
    float v[10];
    for (int i = 0; i < 10; i++) v[i] = (float)i;
    bl_safetensors *st = bl_safetensors_alloc();
    bl_safetensors_add(st, "v", BL_DTYPE_F32, 2, BL_SHAPE(2, 5), v);
    bl_safetensors_add(st, "w", BL_DTYPE_F64, 1, BL_SHAPE(1), (double[]){2.5});
    ck_assert_int_eq(bl_safetensors_write(st, path), BL_OK);
    bl_safetensors_free(st);
    unsigned char *all;
    size_t n = read_all(path, &all);
    /* every proper prefix is rejected as a format error, never a crash */
    for (size_t k = 0; k < n; k++) {
        write_all(cut, all, k);
        bl_safetensors *r = (bl_safetensors *)1;
        ck_assert_int_eq(bl_safetensors_read(&r, cut), BL_ERR_FORMAT);
        ck_assert_ptr_null(r);
        ck_assert_ptr_nonnull(strstr(bl_error_message(), cut));
    }
    /* single-byte corruptions anywhere: either a clean error or a successful parse */
    srand(7);
    for (int trial = 0; trial < 400; trial++) {
        unsigned char *copy = malloc(n);
        memcpy(copy, all, n);
        size_t at = (size_t)rand() % n;
        copy[at] = (unsigned char)rand();
        bl_safetensors *r;
        bl_status s = bl_safetensors_parse(&r, copy, n, "flip");
        ck_assert(s == BL_OK || s == BL_ERR_FORMAT);
        if (s == BL_OK) bl_safetensors_free(r);
        free(copy);
    }
    free(all);
    bl_safetensors *r;
    path_of(cut, sizeof cut, "missing.safetensors");
    ck_assert_int_eq(bl_safetensors_read(&r, cut), BL_ERR_IO);
}
END_TEST

START_TEST(test_write_errors_and_bad_adds)
{
    bl_safetensors *st = bl_safetensors_alloc();
    float x = 1;
    ck_assert_int_eq(bl_safetensors_add(st, "x", BL_DTYPE_F32, 0, NULL, &x), BL_OK);
    ck_assert_int_eq(bl_safetensors_add(st, "x", BL_DTYPE_F32, 0, NULL, &x), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'x' added twice"));
    ck_assert_int_eq(bl_safetensors_add(st, "", BL_DTYPE_F32, 0, NULL, &x), BL_ERR_ARG);
    ck_assert_int_eq(bl_safetensors_add(st, "__metadata__", BL_DTYPE_F32, 0, NULL, &x), BL_ERR_ARG);
    ck_assert_int_eq(bl_safetensors_add(st, "neg", BL_DTYPE_F32, 1, BL_SHAPE(-1), &x), BL_ERR_ARG);
    char path[300];
    path_of(path, sizeof path, "no/such/dir/x.safetensors");
    ck_assert_int_eq(bl_safetensors_write(st, path), BL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "no/such/dir/x.safetensors"));
    bl_safetensors_free(st);
}
END_TEST

START_TEST(test_tensor_conversion)
{
    char path[300];
    path_of(path, sizeof path, "t.safetensors");
    bl_tensor *t = bl_tensor_alloc("w", 4, BL_SHAPE(2, 3, 4, 5), 0);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (bl_real)(0.1 * (double)i - 3.3);
    bl_safetensors *st = bl_safetensors_alloc();
    ck_assert_int_eq(bl_safetensors_add_tensor(st, "w32", t, BL_DTYPE_F32), BL_OK);
    ck_assert_int_eq(bl_safetensors_add_tensor(st, "w64", t, BL_DTYPE_F64), BL_OK);
    ck_assert_int_eq(bl_safetensors_write(st, path), BL_OK);
    bl_safetensors_free(st);
    ck_assert_int_eq(bl_safetensors_read(&st, path), BL_OK);
    bl_tensor *u = bl_tensor_alloc(NULL, 4, BL_SHAPE(2, 3, 4, 5), 0);
    ck_assert_int_eq(bl_safetensors_read_into(st, path, "w64", u), BL_OK);
    ck_assert_int_eq(memcmp(u->data, t->data, (size_t)t->numel * sizeof(bl_real)), 0);
    ck_assert_int_eq(bl_safetensors_read_into(st, path, "w32", u), BL_OK);
    for (int64_t i = 0; i < t->numel; i++) ck_assert(u->data[i] == (bl_real)(float)t->data[i]);
    bl_safetensors_free(st);
    bl_tensor_free(t);
    bl_tensor_free(u);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_round_trip_bit_exact);
    tcase_add_test(tc, test_exact_bytes);
    tcase_add_test(tc, test_parse_foreign_order);
    tcase_add_test(tc, test_corrupt_headers);
    tcase_add_test(tc, test_truncated_and_flipped_files);
    tcase_add_test(tc, test_write_errors_and_bad_adds);
    tcase_add_test(tc, test_tensor_conversion);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
