"""Time to restore full replication after a node is lost, and the write latency meanwhile
(issue 19, "Measure and report").

Each trial starts `shoal dev --nodes 5 --no-restart` on loopback with a fresh data directory,
creates TABLES on-demand tables (4 partitions each, 3 replicas per partition), writes ITEMS
items, then runs one writer that puts items one after another (bounded: it stops at the end of
the trial) while the script:
1. measures a BASELINE_S-second window of put latency;
2. SIGKILLs node 5 for good;
3. polls `shoal admin status --json` every POLL_S seconds until every partition lists three
   replicas, none on node 5, each reported healthy: the restore time, counted from the kill.
   It includes the detection threshold (`--node-down-after`), the autoadmin's probe period
   (5 s) and the moves themselves, reported separately as "restore - threshold";
4. keeps writing AFTER_S more seconds, stops the writer, and reads every acknowledged item
   back with a strongly consistent GetItem (a lost write fails the trial).

Put latency is reported for three windows: before the kill, from the kill until restored,
and after; "longest put" is the longest single put (the write pause a move or the loss caused;
puts to the lost node's partitions wait for their new leader's election first).

With MODE `decommission` (instead of the default `kill`), step 2 runs `shoal admin
decommission 5` instead: node 5 keeps running while the autoadmin drains it with planned moves
(each new replica added and caught up before the old one goes), and the restore time is until
node 5 has left the node list and every partition is whole without it. Its "longest put" is
the write pause the moves caused.

With MODE `kill-metadata`, step 2 SIGKILLs node 1 instead, a node of the metadata group (the
cluster's catalog, created on nodes 1-3), and step 3 also waits for the metadata group to list
three healthy replicas, none on node 1: the time the whole cluster, its control plane
included, takes to be back to three replicas of everything.

With MODE `join`, `shoal dev` starts only nodes 1-4, and step 2 starts node 5 with `shoal node
--join` (dev's node settings): the autoadmin's balance moves replicas onto it. The restore time
is until node 5 holds its share (within one of the replicas per node of the others), no move is
under way, and every partition is whole. Its "longest put" is the write pause the moves caused.

Usage: python3 bench/heal/heal.py SHOAL_BINARY [TRIALS] [NODE_DOWN_AFTER_S] [TABLES] [MODE]
Prints one JSON line per trial and a summary; writes nothing else.
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import boto3
import botocore.config

PORT = 26000
NODES = 5
LOST_NODE = 5
ITEMS = 400
BASELINE_S = 10
AFTER_S = 5
POLL_S = 0.5
RESTORE_TIMEOUT_S = 180
STARTUP_TIMEOUT_S = 120


def client():
    return boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{PORT}",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=botocore.config.Config(retries={"max_attempts": 10, "mode": "standard"}),
    )


def node_flags():
    return [f"--node={node}=127.0.0.1:{PORT + 100 * node}" for node in range(1, NODES + 1)]


def status(binary):
    result = subprocess.run(
        [binary, "admin", "status", "--json", *node_flags()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if not result.stdout.strip():
        return None
    return json.loads(result.stdout)


def lost_node(mode):
    return 1 if mode == "kill-metadata" else LOST_NODE


def restored(report, mode):
    lost = lost_node(mode)
    if mode == "decommission" and any(node["id"] == lost for node in report["nodes"]):
        return False
    partitions = [
        p for p in report["partitions"]
        if p["table"] != "(metadata)" or mode == "kill-metadata"
    ]
    whole = bool(partitions) and all(
        len(p["replicas"]) == 3 and sorted(p["healthy"]) == sorted(p["replicas"])
        for p in partitions
    )
    if mode == "join":
        per_node = {}
        for p in partitions:
            for node in p["replicas"]:
                per_node[node] = per_node.get(node, 0) + 1
        counts = [per_node.get(node, 0) for node in range(1, NODES + 1)]
        return whole and not report.get("moves") and max(counts) - min(counts) <= 1
    return whole and all(lost not in p["replicas"] for p in partitions)


def percentile(samples, fraction):
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(samples):
    if not samples:
        return {"puts": 0}
    return {
        "puts": len(samples),
        "p50_ms": round(percentile(samples, 0.50) * 1000, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
        "longest_ms": round(max(samples) * 1000, 1),
    }


class Writer(threading.Thread):
    """Puts items one after another until told to stop; records (start time, latency)."""

    def __init__(self, tables):
        super().__init__(daemon=True)
        self.tables = tables
        self.stop = threading.Event()
        self.samples = []
        self.acknowledged = []
        self.errors = 0

    def run(self):
        dynamodb = client()
        index = 0
        while not self.stop.is_set():
            table = self.tables[index % len(self.tables)]
            key = f"w{index}"
            started = time.monotonic()
            try:
                dynamodb.put_item(
                    TableName=table, Item={"pk": {"S": key}, "n": {"N": str(index)}}
                )
                self.samples.append((started, time.monotonic() - started))
                self.acknowledged.append((table, key, index))
            except Exception:  # noqa: BLE001 - an unacknowledged write is only counted
                self.errors += 1
            index += 1


def trial(binary, number, node_down_after, tables, mode):
    data = tempfile.mkdtemp(prefix="shoal-heal-")
    joiner = None
    dev = subprocess.Popen(
        [
            binary, "dev", "--nodes", str(NODES - 1 if mode == "join" else NODES),
            "--no-restart", "--port", str(PORT), "--data-dir", data,
            "--node-down-after", str(node_down_after),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    threading.Thread(target=lambda: lines.extend(dev.stdout), daemon=True).start()
    try:
        dynamodb = client()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                dynamodb.list_tables()
                break
            except Exception:  # noqa: BLE001 - still starting
                if time.monotonic() > deadline:
                    raise RuntimeError("shoal dev did not answer")
                time.sleep(0.5)
        names = [f"heal{index}" for index in range(tables)]
        for name in names:
            dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        for index in range(ITEMS):
            dynamodb.put_item(
                TableName=names[index % tables], Item={"pk": {"S": f"i{index}"}}
            )
        pid = None
        for line in list(lines):
            found = re.search(rf"node {lost_node(mode)} started \(pid (\d+)\)", line)
            if found:
                pid = int(found.group(1))
        if pid is None and mode != "join":
            raise RuntimeError(f"node {lost_node(mode)}'s pid was not printed")
        writer = Writer(names)
        writer.start()
        time.sleep(BASELINE_S)
        killed = time.monotonic()
        if mode == "decommission":
            subprocess.run(
                [binary, "admin", "decommission", str(LOST_NODE), *node_flags()],
                check=True,
                capture_output=True,
                timeout=60,
            )
        elif mode == "join":
            joiner = subprocess.Popen(
                [
                    binary, "node", f"--node-id={LOST_NODE}",
                    f"--data-dir={data}/node-{LOST_NODE}",
                    f"--listen=127.0.0.1:{PORT + 100 * LOST_NODE}",
                    "--wal-segment-mib=16", "--wal-segments=4",
                    f"--join=127.0.0.1:{PORT + 100}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        else:
            os.kill(pid, signal.SIGKILL)
        restored_at = None
        while time.monotonic() - killed < RESTORE_TIMEOUT_S:
            report = status(binary)
            if report is not None and restored(report, mode):
                restored_at = time.monotonic()
                break
            time.sleep(POLL_S)
        if restored_at is None:
            raise RuntimeError("replication was not restored in time")
        time.sleep(AFTER_S)
        writer.stop.set()
        writer.join()
        lost = 0
        for table, key, index in writer.acknowledged:
            item = dynamodb.get_item(
                TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True
            ).get("Item")
            if item is None or item["n"]["N"] != str(index):
                lost += 1
        before = [lat for (at, lat) in writer.samples if at < killed]
        during = [lat for (at, lat) in writer.samples if killed <= at < restored_at]
        after = [lat for (at, lat) in writer.samples if at >= restored_at]
        restore_s = restored_at - killed
        result = {
            "trial": number,
            "restore_s": round(restore_s, 2),
            "restore_minus_threshold_s": round(restore_s - node_down_after, 2),
            "before": summary(before),
            "during": summary(during),
            "after": summary(after),
            "unacknowledged_puts": writer.errors,
            "acknowledged_puts": len(writer.acknowledged),
            "acknowledged_puts_lost": lost,
        }
        print(json.dumps(result), flush=True)
        return result
    finally:
        if joiner is not None:
            joiner.kill()
            joiner.wait()
        try:
            os.killpg(dev.pid, signal.SIGTERM)
            dev.wait(timeout=30)
        except Exception:  # noqa: BLE001 - best effort
            os.killpg(dev.pid, signal.SIGKILL)
        shutil.rmtree(data, ignore_errors=True)


def main():
    binary = sys.argv[1]
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    node_down_after = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    tables = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    mode = sys.argv[5] if len(sys.argv) > 5 else "kill"
    if mode not in ("kill", "kill-metadata", "decommission", "join"):
        raise SystemExit("MODE is kill, kill-metadata, decommission or join")
    results = [
        trial(binary, number, node_down_after, tables, mode) for number in range(1, trials + 1)
    ]
    restores = [result["restore_s"] for result in results]
    moves = [result["restore_minus_threshold_s"] for result in results]
    print(
        f"{mode}: {trials} trials, --node-down-after {node_down_after}, {tables} tables "
        f"({tables * 4} partitions): restore p50 {statistics.median(restores):.2f} s, max "
        f"{max(restores):.2f} s; restore minus threshold p50 {statistics.median(moves):.2f} s, "
        f"max {max(moves):.2f} s; acknowledged puts lost: "
        f"{sum(result['acknowledged_puts_lost'] for result in results)}"
    )


if __name__ == "__main__":
    main()
