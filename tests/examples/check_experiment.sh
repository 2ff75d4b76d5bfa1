#!/bin/sh
# examples/experiment on the quick config, one fixed batch for 20 steps: the training loss must
# go down, and the run's checkpoint, curve and q statistics must be there.
#   check_experiment.sh EXPERIMENT CONFIGS_DIR
set -eu
exe=$1
configs=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$exe" "$configs/quick.cfg" "$dir/run" train.fixed_batch=true train.steps_per_epoch=20 \
    train.val_batches=0 train.print_every=10 > "$dir/out.txt" 2> "$dir/err.txt" || {
    cat "$dir/out.txt" "$dir/err.txt"; exit 1; }
cat "$dir/out.txt"
line=$(grep 'after 20 steps: train loss' "$dir/out.txt") || { echo "FAIL: no loss line"; exit 1; }
first=$(echo "$line" | sed 's/.*train loss \([^ ]*\) -> .*/\1/')
last=$(echo "$line" | sed 's/.* -> \(.*\)$/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.01 * (a < 0 ? -a : a)) }' || {
    echo "FAIL: the loss did not decrease by 1%: $first -> $last"; exit 1; }
test -s "$dir/run/last.safetensors" || { echo "FAIL: no last.safetensors"; exit 1; }
test "$(wc -l < "$dir/run/curve.csv")" -eq 21 || { echo "FAIL: curve.csv has not 20 steps"; exit 1; }
grep -q 'q(redshift) over' "$dir/out.txt" || { echo "FAIL: no q statistics"; exit 1; }
# a bad key is an error naming it
if "$exe" "$configs/quick.cfg" "$dir/bad" train.no_such_key=1 > /dev/null 2> "$dir/err.txt"; then
    echo "FAIL: an unknown key was accepted"; exit 1
fi
grep -q "train.no_such_key" "$dir/err.txt" || { cat "$dir/err.txt"; echo "FAIL: message"; exit 1; }
echo "ok: loss $first -> $last"
