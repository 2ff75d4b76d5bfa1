/* Training is reproducible bit for bit (docs/reproduce.md): two `bliss train` runs of
 * configs/quick.cfg with the same seed and thread count, in two directories, write the same
 * curve.csv (every column but the wall-clock seconds), the same config.cfg and the same
 * checkpoints (every tensor byte and every metadata value but train.seconds).
 *
 * The losses are also compared with golden numbers: the curve this test's run printed before
 * gradient buffers were recycled within a step (autograd/tape.c), so the recycling changed no
 * bit. They hold for the builds and CPU they were checked on (float, optimised: release, and
 * debugoptimized with ASan/UBSan, which gives the same digits; oneDNN with the ISA
 * avx512_core_bf16, OpenBLAS's Haswell kernels); elsewhere the comparison is skipped with a note
 * on stderr, because oneDNN's JIT kernels per ISA, OpenBLAS's kernels per core and the
 * compiler's code per optimisation level can each change the last digits. */
#include <cblas.h>
#include <jansson.h>
#ifdef BL_HAVE_DNNL
#include <dnnl.h>
#endif

#include "lib/tensor.h"
#include "tests/bl_check.h"

#include "cli_run.h"

static char dir[256];
static cli_result r;

static void setup(void) { bl_check_tmpdir(dir, sizeof dir, "bl_test_reproduce"); }
static void teardown(void) { cli_rmtree(dir); }

static char *slurp(const char *d, const char *name, size_t *n)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", d, name);
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", p);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    ck_assert(len >= 0);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    ck_assert(buf != NULL);
    ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return buf;
}

/* run a train in dir/<sub> (configs linked there); the output directory is "run" in each */
static void train(const char *sub)
{
    char d[600];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    ck_assert_int_eq(mkdir(d, 0700), 0);
    cli_link_configs(d);
    cli_run(&r, d, "train", "-c", "quick.cfg", "-o", "run", "--threads", "2", "--set",
            "train.steps_per_epoch=6", NULL);
    ck_assert_msg(r.status == 0, "train in %s: %s", sub, r.err);
}

/* curve.csv without its last column (seconds): one string, lines kept */
static char *curve_without_seconds(const char *sub, int *lines)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    size_t n;
    char *s = slurp(p, "run/curve.csv", &n), *out = malloc(n + 1), *o = out;
    ck_assert(out != NULL);
    *lines = 0;
    for (char *line = s; *line;) {
        char *end = strchr(line, '\n');
        ck_assert_msg(end != NULL, "curve.csv: unterminated last line");
        char *comma = line;
        for (int k = 0; k < 4; k++) {
            comma = memchr(comma, ',', (size_t)(end - comma));
            ck_assert_msg(comma != NULL, "curve.csv: fewer than 5 columns in '%.*s'", (int)(end - line), line);
            comma++;
        }
        memcpy(o, line, (size_t)(comma - line));
        o += comma - line;
        *o++ = '\n';
        (*lines)++;
        line = end + 1;
    }
    *o = 0;
    free(s);
    return out;
}

/* the two runs' checkpoint `name`: same header (tensor names, dtypes, shapes, offsets,
 * metadata but train.seconds) and the same bytes after it */
static void assert_same_checkpoint(const char *name)
{
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/a/run", dir);
    snprintf(pb, sizeof pb, "%s/b/run", dir);
    size_t na, nb;
    char *a = slurp(pa, name, &na), *b = slurp(pb, name, &nb);
    ck_assert(na > 8 && nb > 8);
    uint64_t ha, hb;
    memcpy(&ha, a, 8);
    memcpy(&hb, b, 8);
    /* the headers may differ in length by train.seconds' digits; the tensor bytes may not */
    ck_assert_msg(8 + ha <= na && 8 + hb <= nb && na - 8 - ha == nb - 8 - hb,
                  "%s: %zu bytes (header %llu) vs %zu (header %llu)", name, na,
                  (unsigned long long)ha, nb, (unsigned long long)hb);
    json_error_t err;
    json_t *ja = json_loadb(a + 8, ha, 0, &err), *jb = json_loadb(b + 8, hb, 0, &err);
    ck_assert_msg(ja && jb, "%s: header is not JSON: %s", name, err.text);
    json_t *ma = json_object_get(ja, "__metadata__"), *mb = json_object_get(jb, "__metadata__");
    ck_assert(ma && mb && json_object_get(ma, "train.seconds") && json_object_get(mb, "train.seconds"));
    json_object_del(ma, "train.seconds");
    json_object_del(mb, "train.seconds");
    ck_assert_msg(json_equal(ja, jb), "%s: the headers differ beyond train.seconds", name);
    ck_assert_msg(memcmp(a + 8 + ha, b + 8 + hb, na - 8 - ha) == 0, "%s: the tensor bytes differ", name);
    json_decref(ja);
    json_decref(jb);
    free(a);
    free(b);
}

/* The curve of this test's run on the recording machine class, before gradient buffers were
 * recycled (step,train_loss,val_loss,lr). */
static const char golden[] = "step,train_loss,val_loss,lr,\n"
                             "1,9.535554885864258,,0.001,\n"
                             "2,20.793323516845703,,0.001,\n"
                             "3,21.948375701904297,,0.001,\n"
                             "4,28.590553283691406,,0.001,\n"
                             "5,12.110130310058594,,0.001,\n"
                             "6,47.279396057128906,31.049728393554688,0.001,\n";
#define GOLDEN_ISA 0xe7 /* dnnl_cpu_isa_avx512_core_bf16 */
#define GOLDEN_CORE "Haswell"

START_TEST(test_two_runs_bit_identical)
{
    train("a");
    train("b");
    int la, lb;
    char *ca = curve_without_seconds("a", &la), *cb = curve_without_seconds("b", &lb);
    ck_assert_int_eq(la, 7); /* header + 6 steps */
    ck_assert_int_eq(lb, la);
    ck_assert_msg(strcmp(ca, cb) == 0, "the curves differ:\n%s---\n%s", ca, cb);
    assert_same_checkpoint("last.safetensors");
    assert_same_checkpoint("best.safetensors");
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/a/run", dir);
    snprintf(pb, sizeof pb, "%s/b/run", dir);
    size_t na, nb;
    char *fa = slurp(pa, "config.cfg", &na), *fb = slurp(pb, "config.cfg", &nb);
    ck_assert_msg(na == nb && memcmp(fa, fb, na) == 0, "config.cfg differs");
    free(fa);
    free(fb);

    const char *buildtype = getenv("BL_BUILDTYPE"), *sanitize = getenv("BL_SANITIZE");
    const int optimised = buildtype && (!strcmp(buildtype, "release") || !strcmp(buildtype, "debugoptimized"));
#ifdef BL_HAVE_DNNL
    const int isa = (int)dnnl_get_effective_cpu_isa();
#else
    const int isa = -1; /* built without oneDNN: the im2col engine */
#endif
    const char *core = openblas_get_corename();
    if (sizeof(bl_real) == 4 && optimised && isa == (int)GOLDEN_ISA && !strcmp(core, GOLDEN_CORE)) {
        ck_assert_msg(strcmp(ca, golden) == 0, "the losses moved from the golden curve:\n%s---\n%s", ca,
                      golden);
    } else {
        fprintf(stderr, "test_reproduce: golden losses not compared: they hold for float release "
                        "or debugoptimized builds, oneDNN ISA 0x%x, OpenBLAS core %s; this is a %s "
                        "build (sanitize %s), ISA 0x%x, core %s\n",
                (int)GOLDEN_ISA, GOLDEN_CORE, buildtype ? buildtype : "?", sanitize ? sanitize : "?",
                isa, core);
    }
    free(ca);
    free(cb);
}
END_TEST

static Suite *reproduce_suite(void)
{
    Suite *s = suite_create("reproduce");
    TCase *tc = tcase_create("reproduce");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_two_runs_bit_identical);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(reproduce_suite()); }
