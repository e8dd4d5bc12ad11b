"""Idle CPU of a `shoal dev` cluster holding N idle partitions (issue 19, item 4).

Starts `shoal dev` (3 nodes and a router) on loopback, creates TABLES on-demand tables of the
router's default 4 partitions each (every partition has a replica on each of the 3 nodes), lets
the cluster settle, then samples every process's CPU time (utime + stime from /proc) over
WINDOW_S seconds with no request in flight. Prints each node's and the router's share of one
core. Bounded: a fixed number of CreateTable calls, one measurement window, then the cluster is
stopped.

Usage: python3 bench/idle/idle_cpu.py SHOAL_BINARY TABLES [WINDOW_S] [DEV_ARGS...]

DEV_ARGS go to `shoal dev` as given: `--ttl-sweep-period-seconds 3600` measures with the
production default TTL period (`shoal dev` sweeps every 5 s, and each node then rereads every
table's TTL setting from the metadata group every 5 s).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import boto3
import botocore.config

PORT = 25000
SETTLE_S = 30
STARTUP_TIMEOUT_S = 120
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; after the command's ")" they are 12 and 13.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
            with open(f"/proc/{entry}/cmdline") as cmdline:
                command = cmdline.read().replace("\0", " ")
        except OSError:
            continue
        parent = int(text.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.append((int(entry), command))
    return found


def main():
    binary, tables = sys.argv[1], int(sys.argv[2])
    window_s = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    dev_args = sys.argv[4:]
    data_dir = tempfile.mkdtemp(prefix="shoal-idle-")
    dev = subprocess.Popen([binary, "dev", "--data-dir", data_dir, "--port", str(PORT)] + dev_args,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = boto3.client(
            "dynamodb", endpoint_url=f"http://127.0.0.1:{PORT}", region_name="us-east-1",
            aws_access_key_id="idle", aws_secret_access_key="idle",
            config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 10}))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                client.list_tables()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for index in range(tables):
            client.create_table(
                TableName=f"idle{index:04d}", BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        time.sleep(SETTLE_S)
        processes = children(dev.pid)
        before = {pid: cpu_seconds(pid) for pid, _ in processes}
        started = time.monotonic()
        time.sleep(window_s)
        elapsed = time.monotonic() - started
        result = {"tables": tables, "partitions": tables * 4, "window_s": round(elapsed, 1),
                  "dev_args": dev_args, "processes": []}
        for pid, command in processes:
            share = (cpu_seconds(pid) - before[pid]) / elapsed
            role = "router" if " router" in command else ("node" if " node" in command else command)
            result["processes"].append({"pid": pid, "role": role,
                                        "core_share_percent": round(100 * share, 2)})
        print(json.dumps(result, indent=1))
    finally:
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
