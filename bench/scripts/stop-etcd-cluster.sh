#!/bin/sh
# Stops the members started by start-etcd-cluster.sh DIR (by their recorded PIDs) and removes
# their data.
set -eu
DIR=${1:?usage: stop-etcd-cluster.sh DIR}
[ -e "$DIR/pids" ] || { echo "no $DIR/pids"; exit 0; }
for pid in $(cat "$DIR/pids"); do kill "$pid" 2>/dev/null || true; done
sleep 1
for pid in $(cat "$DIR/pids"); do kill -9 "$pid" 2>/dev/null || true; done
rm -rf "$DIR/m1" "$DIR/m2" "$DIR/m3" "$DIR/pids"
