#!/bin/sh
# bliss under `mpirun -np 2` (tests/tools/meson.build): usage: test_mpi_cli.sh BLISS CONFIGS_DIR
#  1. generate: the shards of 2 processes are byte-identical to those of 1 process;
#  2. a batch that does not split over the processes is a clear error;
#  3. SIGUSR1 to mpirun (forwarded to every process): all stop after the same step, rank 0
#     saves once and says so; --resume under mpirun continues from that checkpoint;
#  4. a process killed mid-run: mpirun exits non-zero within seconds, and the last checkpoint
#     written before loads (bliss evaluate reads it).
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
exit 0
