#!/bin/sh
# docs/factors.md, "A factor on a field that does not exist yet": the `$ bliss ...` commands of
# its shell block run exactly as written (with `bliss` the built binary), in a fresh directory
# holding a copy of configs/; the printed lines the block shows must match, and every output the
# text names must exist and hold the new field.
#   check_tutorial.sh BLISS SOURCE_DIR
set -eu
bliss=$1
src=$2
doc="$src/docs/factors.md"
dir=$(mktemp -d /tmp/bl_tutorial_XXXXXX)
trap 'rm -rf "$dir"' EXIT
cp -r "$src/configs" "$dir/configs"
# the shell block after "Then, with no C code:"
awk '/Then, with no C code:$/ {on = 1; next} on && /^```/ {n++; if (n == 2) exit; next} on && n == 1 {print}' \
    "$doc" > "$dir/block.txt"
test -s "$dir/block.txt" || { echo "FAIL: no shell block found in $doc"; exit 1; }
grep -c '^\$ bliss' "$dir/block.txt" | grep -qx 5 || { cat "$dir/block.txt"; echo "FAIL: expected 5 commands"; exit 1; }
mkdir "$dir/bin"
ln -s "$bliss" "$dir/bin/bliss"
cd "$dir"
# each command; the lines after a command up to the next one are its expected output
expected=""
run_expect() {
    if [ -n "$cmd" ]; then
        echo "+ $cmd"
        PATH="$dir/bin:$PATH" OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} sh -c "$cmd" > out.txt 2> err.txt ||
            { cat out.txt err.txt; echo "FAIL: '$cmd' exited non-zero"; exit 1; }
        if [ -n "$expected" ]; then
            printf '%s\n' "$expected" > want.txt
            diff want.txt out.txt || { echo "FAIL: '$cmd' printed other lines than docs/factors.md shows"; exit 1; }
        fi
    fi
}
cmd=""
while IFS= read -r line; do
    case "$line" in
        '$ '*) run_expect; cmd=${line#\$ }; cmd=${cmd%%#*}; expected="" ;;
        *) expected="${expected:+$expected
}$line" ;;
    esac
done < block.txt
run_expect
# the outputs the text lists
test -f ds/shard_0000.safetensors && test -f ds/shard_0000.fits || { ls ds; echo "FAIL: no shards"; exit 1; }
grep -aq 'tile_catalog.photo_z_err' ds/shard_0000.safetensors || { echo "FAIL: the shard has no tile_catalog.photo_z_err"; exit 1; }
test -f run/last.safetensors || { echo "FAIL: no run/last.safetensors"; exit 1; }
python3 - <<'PY' || { echo "FAIL: metrics.json"; exit 1; }
import json, math
m = json.load(open("metrics.json"))
for part in ("mode", "sample"):
    f = m[part]["factors"]["photo_z_err"]
    assert "mse" in f and "mae" in f, (part, f)
q = m["marginal"]["factors"]["photo_z_err"]
assert q["n_tiles"] > 0 and math.isfinite(q["nll"]), q
for k in ("coverage_68", "coverage_95"):
    assert 0 <= q[k] <= 1, (k, q)
print("metrics.json: photo_z_err q over %d tiles: nll %.4g, coverage 68/95 %.3g/%.3g" %
      (q["n_tiles"], q["nll"], q["coverage_68"], q["coverage_95"]))
PY
test -f pred.fits && test -f pred.safetensors || { echo "FAIL: no pred.fits / pred.safetensors"; exit 1; }
for k in photo_z_err photo_z_err_loc photo_z_err_scale; do
    grep -aq "tile_catalog.$k\"" pred.safetensors || { echo "FAIL: pred.safetensors has no tile_catalog.$k"; exit 1; }
done
n=$(ls pred_*.png 2>/dev/null | wc -l)
[ "$n" -ge 1 ] || { ls; echo "FAIL: no pred_NNNN.png"; exit 1; }
head -c 8 pred_0000.png | od -An -c | grep -q 'P   N   G' || { echo "FAIL: pred_0000.png is not a PNG"; exit 1; }
echo "ok: the tutorial's 5 commands ran as written; $n plots"
