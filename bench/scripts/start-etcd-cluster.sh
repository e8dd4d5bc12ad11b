#!/bin/sh
# Starts 3 etcd members on 127.0.0.1 with fresh data directories, in the background, and
# prints their PIDs (one a line) to DIR/pids. Stop them with stop-etcd-cluster.sh DIR.
#
#   start-etcd-cluster.sh DIR [BASE_PORT]
#
# Member i (1..3) serves clients on BASE_PORT + 10*(i-1) (default 23790) and peers on that + 1.
# Defaults are kept: every write is acknowledged after a quorum has fdatasync'ed it.
set -eu
DIR=${1:?usage: start-etcd-cluster.sh DIR [BASE_PORT]}
BASE=${2:-23790}
if [ -e "$DIR/pids" ]; then
    echo "$DIR/pids exists: stop that cluster first (stop-etcd-cluster.sh $DIR)" >&2
    exit 1
fi
mkdir -p "$DIR"
CLUSTER=""
for i in 1 2 3; do
    PEER=$((BASE + 10 * (i - 1) + 1))
    CLUSTER="${CLUSTER:+$CLUSTER,}m$i=http://127.0.0.1:$PEER"
done
TOKEN="shoal-bench-$$-$(date +%s)"
: > "$DIR/pids"
for i in 1 2 3; do
    CLIENT=$((BASE + 10 * (i - 1)))
    PEER=$((CLIENT + 1))
    rm -rf "$DIR/m$i"
    etcd --name "m$i" --data-dir "$DIR/m$i" \
        --listen-client-urls "http://127.0.0.1:$CLIENT" --advertise-client-urls "http://127.0.0.1:$CLIENT" \
        --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
        --initial-cluster "$CLUSTER" --initial-cluster-token "$TOKEN" --initial-cluster-state new \
        > "$DIR/m$i.log" 2>&1 &
    echo $! >> "$DIR/pids"
done
echo "etcd endpoints: http://127.0.0.1:$BASE,http://127.0.0.1:$((BASE + 10)),http://127.0.0.1:$((BASE + 20))"
echo "pids in $DIR/pids: $(tr '\n' ' ' < "$DIR/pids")"
