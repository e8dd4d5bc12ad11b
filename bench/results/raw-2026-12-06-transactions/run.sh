#!/bin/bash
# Usage: run.sh BIN LABEL WORKLOAD CLIENTS OPS ROUND
set -u
BIN=$1; LABEL=$2; WORKLOAD=$3; CLIENTS=$4; OPS=$5; ROUND=$6
DIR=/tmp/tbench/data-$LABEL
PORT=18000
rm -rf $DIR
setsid $BIN dev --data-dir $DIR --port $PORT > /tmp/tbench/dev-$LABEL.log 2>&1 &
DEVPID=$!
sleep 8
PIDS=$(grep -oE "(node [0-9]|router) (re)?started \(pid [0-9]+\)" /tmp/tbench/dev-$LABEL.log | grep -oE "[0-9]+\)$" | tr -d ')' | paste -sd, -)
/work/main/target/release/shoal-bench run --target dynamodb-http --http-endpoint 127.0.0.1:$PORT \
  --workload $WORKLOAD --distribution uniform --record-count 1000 --clients $CLIENTS \
  --operations $OPS $(for p in ${PIDS//,/ }; do echo -n "--server-pid $p "; done) --json /tmp/tbench/r$ROUND-$LABEL-$WORKLOAD-c$CLIENTS.json > /tmp/tbench/r$ROUND-$LABEL-$WORKLOAD-c$CLIENTS.txt 2>&1
kill -TERM -$DEVPID 2>/dev/null; kill -TERM $DEVPID 2>/dev/null
sleep 3
pkill -f "data-dir $DIR" 2>/dev/null
sleep 1
