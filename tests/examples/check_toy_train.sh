#!/bin/sh
# The demo must learn: the mean loss of the last 10 steps is below 70% of the first 10.
out=$("$1" 100 3) || { echo "toy_train failed"; exit 1; }
echo "$out"
echo "$out" | awk '/^step/ { if (!first) first = $4; last = $4 }
  END { if (!first || last >= 0.7 * first) { print "loss did not decrease enough: " first " -> " last; exit 1 }
        print "ok: " first " -> " last }'
