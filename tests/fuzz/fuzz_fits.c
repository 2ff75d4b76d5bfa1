/* FITS readers: images per band (predict's input) and the CATALOG table. */
#include "lib/io/fits.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = bl_fuzz_file("in.fits", data, size);
    static const char *const bands[] = {"u", "g", "r", "i", "z"};
    bl_tensor *t;
    if (bl_fits_read_batch_images(path, 5, bands, NULL, &t) == BL_OK) bl_tensor_free(t);
    if (bl_fits_read_batch_images(path, 1, bands + 2, "BKG_", &t) == BL_OK) bl_tensor_free(t);
    bl_full_catalog *cat;
    if (bl_fits_read_catalog(path, &cat) == BL_OK) bl_full_catalog_free(cat);
    return 0;
}
