#!/bin/sh
# Installs etcd (Debian's etcd-server, which carries etcd and etcdctl) for shoal-bench's etcd
# peer, and protoc (protobuf-compiler), which etcd-client's build script needs to build
# `shoal-bench --features etcd`. Idempotent: installs only what is missing.
set -eu
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if ! command -v protoc >/dev/null 2>&1; then
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends protobuf-compiler
fi
if command -v etcd >/dev/null 2>&1; then
    echo "etcd already installed: $(command -v etcd)"
    etcd --version | head -n 1
    exit 0
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends etcd-server etcd-client || \
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends etcd-server
# Debian starts a system etcd on 2379/2380 when it can; the benchmark runs its own members.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
etcd --version | head -n 1
