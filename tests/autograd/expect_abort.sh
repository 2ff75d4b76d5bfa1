#!/bin/sh
# usage: expect_abort.sh PROGRAM ARG PATTERN...
# Passes when PROGRAM ARG exits non-zero (abort) and its stderr contains every PATTERN (fixed
# strings).
prog=$1
arg=$2
shift 2
err=$("$prog" "$arg" 2>&1 >/dev/null)
status=$?
if [ "$status" -eq 0 ]; then
    echo "FAIL: '$prog $arg' exited 0 instead of aborting"
    exit 1
fi
for p in "$@"; do
    if ! printf '%s\n' "$err" | grep -F -q -e "$p"; then
        echo "FAIL: stderr of '$prog $arg' (exit $status) lacks '$p':"
        printf '%s\n' "$err"
        exit 1
    fi
done
echo "ok: '$prog $arg' aborted (exit $status) with: $(printf '%s\n' "$err" | head -n 1)"
