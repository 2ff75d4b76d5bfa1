#!/bin/sh
# examples/seed_redshift on a tiny setting (1 image of 32 x 32 pixels, 3 steps):
#  - the output has its documented lines, every number finite, P = 40, the simulated
#    redshifts inside the prior's [0.99, 1.01], the loss lower after 3 Adam steps on one batch;
#  - the C program and `bliss train -c configs/seed_toy.cfg` with the same seed, batch, image
#    size and thread count print the same losses and the same q(redshift) statistics;
#  - bad arguments are a usage error (status 2).
# usage: check_seed_redshift.sh SEED_REDSHIFT BLISS CONFIGS_DIR
ex=$1 bliss=$2 configs=$3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

"$ex" 3 1 7 --tiles 8 --threads 2 >"$tmp/ex.txt" || { echo "seed_redshift failed"; exit 1; }
cat "$tmp/ex.txt"
awk '
  function finite(v) { return v ~ /^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/ }
  /^seed_redshift: P = / { head = 1; if ($4 != "40,") bad = bad "P is " $4 " not 40; " }
  /^batch: / { zmin = $(NF - 1); zmax = $NF; gsub(/[\[\],]/, "", zmin); gsub(/[\[\],]/, "", zmax)
               nb++; if (!finite(zmin) || !finite(zmax) || zmin + 0 < 0.99 || zmax + 0 > 1.01 ||
                         zmin + 0 > zmax + 0)
                 bad = bad "redshifts [" zmin ", " zmax "] outside [0.99, 1.01]; " }
  /^step / { loss[$2] = $4; if (!finite($4) || !finite($5)) bad = bad "non-finite step line: " $0 "; " }
  /^q\(redshift\) over / { nq++
    for (i = 1; i <= NF; i++) if ($i == "mean" || $i == "sd") {
      v = $(i + 1); sub(/,$/, "", v)
      if (!finite(v)) bad = bad "non-finite q statistic: " $0 "; " }
    if ($0 !~ /loc mean .* sd .*, scale mean .* sd /) bad = bad "bad q line: " $0 "; " }
  END {
    if (!head || nb != 1) bad = bad "header or batch line missing; "
    if (!(1 in loss) || !(3 in loss) || (2 in loss)) bad = bad "expected step lines 1 and 3 only; "
    else if (loss[3] + 0 >= loss[1] + 0) bad = bad "loss did not decrease: " loss[1] " -> " loss[3] "; "
    if (nq != 2) bad = bad nq " q(redshift) lines, expected 2; "
    if (bad != "") { print "FAIL: " bad; exit 1 }
  }' "$tmp/ex.txt" || exit 1

# the same experiment through the CLI
"$bliss" train -c "$configs/seed_toy.cfg" --set prior.batch_size=1 --set prior.n_tiles_h=8 \
  --set prior.n_tiles_w=8 --seed 7 --max-steps 3 --threads 2 -o "$tmp/cli" >"$tmp/cli.txt" ||
  { cat "$tmp/cli.txt"; echo "bliss train failed"; exit 1; }
awk -F, 'NR > 1 { printf "step %4d  loss %.6f\n", $1, $2 }' "$tmp/cli/curve.csv" |
  awk 'NR == 1 || NR == 3' >"$tmp/cli_steps.txt"
sed -n 's/^\(step  *[0-9]*  loss [^ ]*\) .*/\1/p' "$tmp/ex.txt" >"$tmp/ex_steps.txt"
grep '^q(redshift)' "$tmp/cli.txt" >"$tmp/cli_q.txt"
grep '^q(redshift)' "$tmp/ex.txt" >"$tmp/ex_q.txt"
if ! cmp -s "$tmp/ex_steps.txt" "$tmp/cli_steps.txt" || ! cmp -s "$tmp/ex_q.txt" "$tmp/cli_q.txt"; then
  echo "FAIL: the example and bliss train differ"
  diff "$tmp/ex_steps.txt" "$tmp/cli_steps.txt"
  diff "$tmp/ex_q.txt" "$tmp/cli_q.txt"
  exit 1
fi

for args in "0" "3 0" "3 1 x" "3 1 1 --tiles 6" "3 1 1 --bogus"; do
  # shellcheck disable=SC2086
  "$ex" $args >/dev/null 2>&1
  rc=$?
  [ $rc -eq 2 ] || { echo "FAIL: seed_redshift $args: status $rc, expected 2"; exit 1; }
done
echo "ok: the example and bliss train agree on steps 1, 3 and q(redshift)"
