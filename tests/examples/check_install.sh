#!/bin/sh
# The library as a user gets it: install the build into a temporary DESTDIR, compile
# examples/experiment.c out of tree with only `pkg-config --cflags --libs bliss` (pointed at
# the DESTDIR through PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR), and run it for 2 steps on
# the installed data files; then the same from the build tree through meson's uninstalled
# pkg-config files (build/meson-uninstalled) with an rpath. Exit 77 (skipped) only when
# pkg-config itself is missing.
#   check_install.sh BUILD_DIR SOURCE_DIR CC SANITIZE
set -eu
build=$1
src=$2
cc=$3
san=$4
command -v pkg-config > /dev/null || { echo "SKIP: pkg-config is not installed"; exit 77; }
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --no-rebuild --destdir "$dest" > "$dest/install.log" 2>&1 || {
    cat "$dest/install.log"; echo "FAIL: meson install"; exit 1; }
pc=$(find "$dest" -name bliss.pc | head -n 1)
test -n "$pc" || { echo "FAIL: no bliss.pc installed"; exit 1; }
for floor in core io eval sim autograd dists models experiment; do
    test -f "$(dirname "$pc")/bliss-$floor.pc" || { echo "FAIL: no bliss-$floor.pc"; exit 1; }
done
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$dest"
cflags=$(pkg-config --cflags bliss)
libs=$(pkg-config --libs bliss)
echo "pkg-config --cflags --libs bliss: $cflags $libs"
case "$cflags" in *"$dest"*) ;; *) echo "FAIL: the include path is not the DESTDIR's"; exit 1 ;; esac
extra=""
if [ "$san" != "none" ] && [ -n "$san" ]; then extra="-fsanitize=$san"; fi
# the example's source outside the source tree: nothing but the installed headers can be found
cp "$src/examples/experiment.c" "$dest/prog.c"
(cd "$dest" && $cc $extra prog.c $cflags $libs -o prog) || { echo "FAIL: compiling against the install"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
datadir=$(find "$dest" -type d -path '*/share/bliss-c' | head -n 1)
test -n "$datadir" || { echo "FAIL: no share/bliss-c installed"; exit 1; }
LD_LIBRARY_PATH="$libdir" BLISS_DATA_DIR="$datadir" "$dest/prog" "$src/configs/quick.cfg" "$dest/run" \
    train.max_steps=2 train.val_batches=0 > "$dest/out.txt" 2>&1 || { cat "$dest/out.txt"; echo "FAIL: run"; exit 1; }
cat "$dest/out.txt"
grep -q 'after 2 steps: train loss' "$dest/out.txt" || { echo "FAIL: no loss line"; exit 1; }
test -s "$dest/run/last.safetensors" || { echo "FAIL: no checkpoint"; exit 1; }
# the program ran against the installed library, not the build tree's
LD_LIBRARY_PATH="$libdir" ldd "$dest/prog" | grep 'libbliss' | grep -q "$dest" || {
    LD_LIBRARY_PATH="$libdir" ldd "$dest/prog"; echo "FAIL: libbliss not from the DESTDIR"; exit 1; }
# from the build tree, without installing: meson's uninstalled pkg-config files and an rpath
unc=$(PKG_CONFIG_PATH="$build/meson-uninstalled" PKG_CONFIG_SYSROOT_DIR= pkg-config --cflags bliss)
unl=$(PKG_CONFIG_PATH="$build/meson-uninstalled" PKG_CONFIG_SYSROOT_DIR= pkg-config --libs bliss)
echo "build tree: pkg-config --cflags --libs bliss: $unc $unl"
(cd "$dest" && $cc $extra prog.c $unc $unl -Wl,-rpath,"$build" -o prog_tree) ||
    { echo "FAIL: compiling against the build tree"; exit 1; }
BLISS_DATA_DIR="$src" "$dest/prog_tree" "$src/configs/quick.cfg" "$dest/run_tree" \
    train.max_steps=2 train.val_batches=0 > "$dest/out_tree.txt" 2>&1 || { cat "$dest/out_tree.txt"; echo "FAIL: run (build tree)"; exit 1; }
grep -q 'after 2 steps: train loss' "$dest/out_tree.txt" || { cat "$dest/out_tree.txt"; echo "FAIL: no loss line (build tree)"; exit 1; }
# the rpath, not LD_LIBRARY_PATH, found the build tree's libbliss
env -u LD_LIBRARY_PATH ldd "$dest/prog_tree" | grep 'libbliss.so' | grep -q "$(cd "$build" && pwd)" || {
    ldd "$dest/prog_tree"; echo "FAIL: libbliss not from the build tree"; exit 1; }
echo "ok"
