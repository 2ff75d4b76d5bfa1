#!/bin/sh
# bliss under `mpirun -np 2` (tests/tools/meson.build): usage: test_mpi_cli.sh BLISS CONFIGS_DIR
#  1. generate: the shards of 2 processes are byte-identical to those of 1 process;
#  2. a batch that does not split over the processes is a clear error; training with the
#     all-reduce overlapped with backward (train.ddp_overlap) runs and says so;
#  3. SIGUSR1 to mpirun (forwarded to every process): all stop after the same step, rank 0
#     saves once and says so; --resume under mpirun continues from that checkpoint;
#  4. a process killed mid-run: mpirun exits non-zero within seconds, and the last checkpoint
#     written before loads (bliss evaluate reads it);
#  5. predict on 2 and 4 processes (3 images: shares of 2 + 1, and 1 + 1 + 1 + none) writes
#     files byte-identical to 1 process; evaluate on 2 processes (5 batches: 3 + 2) writes the
#     metrics of 1 process (counts equal, values to 1e-9: sums added in another order).
set -u
BLISS=$1
CONFIGS=$2
MPIRUN="mpirun -np 2 --oversubscribe --allow-run-as-root"
dir=$(mktemp -d /tmp/bl_mpi_cli_XXXXXX)
trap 'rm -rf "$dir"' EXIT
cp "$CONFIGS"/*.cfg "$dir"/
cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

# 1. generate (3 shards: rank 0 writes two, rank 1 one)
"$BLISS" generate -c quick.cfg --set generate.n_files=3 -o one --threads 1 >gen1.log 2>&1 || fail "generate 1 process: $(cat gen1.log)"
$MPIRUN "$BLISS" generate -c quick.cfg --set generate.n_files=3 -o two --threads 1 >gen2.log 2>&1 || fail "generate 2 processes: $(cat gen2.log)"
n=0
for f in one/*.safetensors; do
  cmp "$f" "two/$(basename "$f")" || fail "$(basename "$f") differs between 1 and 2 processes"
  n=$((n + 1))
done
[ "$n" = 3 ] || fail "expected 3 shards, got $n"
[ "$(ls two | wc -l)" = 3 ] || fail "2 processes wrote $(ls two) "
grep -q "wrote 3 shards" gen2.log || fail "generate summary: $(cat gen2.log)"
echo "generate: 3 shards byte-identical"

# 2. batch 3 over 2 processes
$MPIRUN "$BLISS" train -c quick.cfg --set prior.batch_size=3 -o bad --threads 1 >bad.log 2>&1 && fail "batch 3 on 2 processes succeeded"
grep -q "multiple of the number of processes" bad.log || fail "no clear message: $(cat bad.log)"
echo "indivisible batch: $(grep -m1 'multiple' bad.log)"

# 2b. the all-reduce overlapped with backward, through the config (bit-identity: test_ddp.c)
$MPIRUN "$BLISS" train -c quick.cfg -o ovl --threads 1 --set train.ddp_overlap=true --set train.ddp_bucket_mb=0.05 \
  >ovl.log 2>&1 || fail "train with ddp_overlap: $(cat ovl.log)"
grep -q "all-reduce overlapped with backward" ovl.log || fail "ddp_overlap not reported: $(head -5 ovl.log)"
[ -f ovl/last.safetensors ] || fail "train with ddp_overlap wrote no checkpoint"
echo "ddp_overlap: trained, $(grep -m1 'data-parallel' ovl.log)"

# 3. SIGUSR1 to mpirun, then --resume (a SIGTERM to mpirun tears the job down: docs/scaling.md)
$MPIRUN "$BLISS" train -c quick.cfg -o term --threads 1 --set train.steps_per_epoch=100000 \
  --set train.checkpoint_every=2 >term.log 2>&1 &
mp=$!
i=0
while [ ! -f term/last.safetensors ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -USR1 $mp
wait $mp
rc=$?
[ $rc -ne 0 ] || fail "mpirun exited 0 after SIGUSR1"
grep -q "interrupted by signal 10; continue with --resume term/last.safetensors" term.log || fail "no interrupted message: $(tail -c 2000 term.log)"
[ "$(grep -c 'interrupted by signal' term.log)" = 1 ] || fail "more than one process reported: $(tail -c 2000 term.log)"
steps=$(sed -n 's/.*stopped: interrupted after \([0-9]*\) steps.*/\1/p' term.log)
[ -n "$steps" ] || fail "no step count: $(tail -c 2000 term.log)"
$MPIRUN "$BLISS" train -c quick.cfg -o term --threads 1 --set train.steps_per_epoch=100000 \
  --max-steps $((steps + 2)) --resume term/last.safetensors >resume.log 2>&1 || fail "resume under mpirun: $(cat resume.log)"
grep -q "resuming from term/last.safetensors: step $steps" resume.log || fail "resume: $(head -5 resume.log)"
grep -q "max_steps reached after $((steps + 2)) steps" resume.log || fail "resume end: $(tail -c 1000 resume.log)"
echo "SIGUSR1: stopped after $steps steps, mpirun exit $rc; resumed to step $((steps + 2))"

# 4. kill one process mid-run
$MPIRUN "$BLISS" train -c quick.cfg -o run --threads 1 --set train.steps_per_epoch=100000 \
  --set train.checkpoint_every=2 >kill.log 2>&1 &
mp=$!
i=0
while [ ! -f run/last.safetensors ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -f run/last.safetensors ] || { kill $mp; fail "no checkpoint after 60 s: $(cat kill.log)"; }
victim=""
for c in $(pgrep -P $mp); do victim=$c; done
[ -n "$victim" ] || { kill $mp; fail "no rank process under mpirun $mp"; }
kill -9 "$victim"
t0=$(date +%s)
wait $mp
rc=$?
t1=$(date +%s)
[ $rc -ne 0 ] || fail "mpirun exited 0 after a rank was killed"
[ $((t1 - t0)) -le 20 ] || fail "mpirun took $((t1 - t0)) s to stop"
"$BLISS" evaluate -c quick.cfg --checkpoint run/last.safetensors --batches 1 -o ev >ev.log 2>&1 || fail "last checkpoint does not load: $(cat ev.log)"
echo "killed rank $victim: mpirun exit $rc after $((t1 - t0)) s; run/last.safetensors loads"

# 5. predict and evaluate split over the processes
"$BLISS" generate -c quick.cfg --set generate.n_files=1 --set prior.batch_size=3 --set generate.n_batches_per_file=1 \
  -o ds3 --threads 1 >gen3.log 2>&1 || fail "generate 3 images: $(cat gen3.log)"
"$BLISS" predict --checkpoint run/last.safetensors -i ds3/shard_0000.safetensors -o p1 --threads 1 >predict1.log 2>&1 ||
  fail "predict 1 process: $(cat predict1.log)"
for np in 2 4; do
  mpirun -np $np --oversubscribe --allow-run-as-root "$BLISS" predict --checkpoint run/last.safetensors \
    -i ds3/shard_0000.safetensors -o p$np --threads 1 >predict$np.log 2>&1 || fail "predict $np processes: $(cat predict$np.log)"
  grep -q "idle" predict$np.log && fail "predict $np processes left a process idle: $(cat predict$np.log)"
  cmp p1.fits p$np.fits || fail "predict: the FITS table of $np processes differs from 1 process's"
  cmp p1.safetensors p$np.safetensors || fail "predict: the tile catalog of $np processes differs from 1 process's"
  [ "$(ls p$np.* | wc -l)" = 2 ] || fail "predict $np processes wrote $(ls p$np.*)"
done
grep -q "in 3 images" predict2.log || fail "predict summary: $(cat predict2.log)"
"$BLISS" evaluate --checkpoint run/last.safetensors --batches 5 -o m1.json --threads 1 >m1.log 2>&1 ||
  fail "evaluate 1 process: $(cat m1.log)"
$MPIRUN "$BLISS" evaluate --checkpoint run/last.safetensors --batches 5 -o m2.json --threads 1 >m2.log 2>&1 ||
  fail "evaluate 2 processes: $(cat m2.log)"
grep -q "idle" m2.log && fail "evaluate left a process idle: $(cat m2.log)"
grep -q "on 5 batches" m2.log || fail "evaluate summary: $(cat m2.log)"
python3 - m1.json m2.json <<'PY' || fail "evaluate: the metrics of 2 processes differ from 1 process's"
import json, math, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
n = {"values": 0, "sums": 0}
def same(x, y, path):
    if isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), path
        for k in x: same(x[k], y[k], path + "." + k)
    elif isinstance(x, list):
        assert isinstance(y, list) and len(x) == len(y), path
        for i, (u, v) in enumerate(zip(x, y)): same(u, v, "%s[%d]" % (path, i))
    elif isinstance(x, float) and not isinstance(y, str):
        assert y is not None and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), "%s: %r vs %r" % (path, x, y)
        n["sums"] += 1
    else:
        assert x == y, "%s: %r vs %r" % (path, x, y)
    n["values"] += 1
same(a, b, "metrics")
# not a vacuous comparison: sampled sources were matched, q(redshift) was scored on tiles
assert a["sample"]["n_matches"] > 0 and a["marginal"]["factors"]["redshift"]["n_tiles"] > 0, a["sample"]
print("evaluate: %d values identical between 1 and 2 processes (%d reals to 1e-9)" % (n["values"], n["sums"]))
PY
echo "predict: 3 images on 2 and 4 processes byte-identical to 1 process"
exit 0
