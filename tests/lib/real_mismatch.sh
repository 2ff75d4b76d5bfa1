#!/bin/sh
# usage: real_mismatch.sh SOURCE_ROOT BUILD_DIR REAL(float|double) CC...
# A program compiled with the element type of libbliss-core links and runs; compiled with the
# other type it must fail to link with a message naming the element-type symbol.
root=$1; build=$2; real=$3; shift 3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
if [ "$real" = double ]; then same=-DBL_REAL_DOUBLE; other=; want=bl_real_is_float
else same=; other=-DBL_REAL_DOUBLE; want=bl_real_is_double; fi
link="-L$build -lbliss-core -Wl,-rpath,$build -Wl,-rpath-link,$build"
"$@" $same -I"$root" "$root/tests/lib/real_mismatch.c" -o "$tmp/same" $link || { echo "FAIL: matching build does not link"; exit 1; }
out=$("$tmp/same") || { echo "FAIL: matching program does not run"; exit 1; }
echo "matching: $out"
if "$@" $other -I"$root" "$root/tests/lib/real_mismatch.c" -o "$tmp/other" $link 2>"$tmp/err"; then
  echo "FAIL: a program built with the other element type linked"; exit 1
fi
grep -q "$want" "$tmp/err" || { echo "FAIL: link error does not name $want:"; cat "$tmp/err"; exit 1; }
echo "mismatch rejected: $(grep -o "$want[A-Za-z_]*" "$tmp/err" | head -n 1)"
