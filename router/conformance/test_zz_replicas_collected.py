"""No replica outlives its table (issue 15: "each node still hosted 1,301 replicas for the 2
tables left" after two test suites had created and deleted a few thousand tables).

This file runs last (pytest takes files in name order) on the session's cluster, after every
other file has created, filled and deleted its tables there, some of them while others were
still being created. It deletes whatever tables are left and then expects every node to host
only the metadata partition's replica, within a bound well under the orphan scan's
(ORPHAN_SCAN_INTERVAL + ORPHAN_REPLICA_GRACE, two minutes): DeleteTable itself must remove its
replicas, and the orphan scan stays a safety net that this test does not wait for. Run alone,
it checks a cluster with little history, and still passes or fails on the same rule.
"""

import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import DEV_NODES, PORT_STRIDE

# DeleteTable answers once the table is DELETING; a router finishes the deletion (and the
# repair pass one that a router left unfinished within REPAIR_INTERVAL, 5 s, plus
# CONTROL_STEP_TIMEOUT, 15 s). Enough for that, well under the orphan scan's two minutes.
COLLECTED_WITHIN_S = 45
# The metadata group's partition, the one replica every dev node keeps with no table.
METADATA_REPLICAS_PER_NODE = 1
# The transaction ledger (router/server README.md, "Transactions"): a hidden on-demand table
# of 4 partitions (PARTITIONS_PER_TABLE_DEFAULT), created by the first transaction and kept;
# each partition has a replica on each of the three dev nodes. This test makes sure it exists,
# so the count does not depend on which files ran before.
LEDGER_REPLICAS_PER_NODE = 4


def _admin_port(base_port, node):
    # shoal dev's layout (tools/shoal/src/dev.rs): node i's admin endpoint on P + 100 i + 99.
    return base_port + PORT_STRIDE * node + PORT_STRIDE - 1


def _replicas_on(base_port, node):
    """The node's hosted replicas, summed over its shards, from its /metrics."""
    url = f"http://127.0.0.1:{_admin_port(base_port, node)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("shoal_replicas{")
    )


def _delete_every_table(ddb):
    names = []
    for page in ddb.get_paginator("list_tables").paginate():
        names.extend(page["TableNames"])
    for name in names:
        try:
            ddb.delete_table(TableName=name)
        except ClientError as error:
            # A table still CREATING (ResourceInUseException) is deleted on a later round; one
            # already gone is what we want.
            if error.response["Error"]["Code"] not in (
                "ResourceInUseException",
                "ResourceNotFoundException",
            ):
                raise
    return names


def _ensure_ledger(ddb):
    """Runs one transaction, on a table of its own (deleted with the rest below), so that the
    transaction ledger exists."""
    name = "zz-ledger-" + str(int(time.time() * 1000))
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": name, "Item": {"pk": {"S": "x"}}}}])


def test_every_replica_of_every_deleted_table_is_removed(ddb, port, table_pool):
    # The pool's tables made ahead and never taken are deleted here too.
    table_pool.close()
    _ensure_ledger(ddb)
    expected = METADATA_REPLICAS_PER_NODE + LEDGER_REPLICAS_PER_NODE
    deadline = time.monotonic() + COLLECTED_WITHIN_S
    while True:
        left = _delete_every_table(ddb)
        hosted = {node: _replicas_on(port, node) for node in range(1, DEV_NODES + 1)}
        if not left and all(count == expected for count in hosted.values()):
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"{COLLECTED_WITHIN_S} s after deleting every table: tables still listed {left}, "
                f"replicas per node {hosted} (expected {expected} each: the metadata group and "
                f"the transaction ledger)"
            )
        time.sleep(1)
