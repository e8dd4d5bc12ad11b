"""/metrics of the router and of every node, read with Prometheus' own Python client parser.

Source: the Prometheus text exposition format (version 0.0.4, prometheus.io "Exposition
formats"): all lines of one metric family must be together, its HELP and TYPE lines before its
samples, and a family appears once. A page that writes every HELP/TYPE line first and the
samples after them parses as typed families without samples plus untyped families holding the
samples, which is what these tests refuse.
"""

import collections
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

import conftest

# `shoal dev --port P`: node i (1..3) serves its metrics at P + 100*i + 99 (README.md).
ADMIN_PORT_OFFSET = 99
METRICS_TIMEOUT_S = 10


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=METRICS_TIMEOUT_S) as response:
        assert response.status == 200
        return response.read().decode()


def families_of(text):
    """The parsed families by name, after checking each is whole and typed."""
    families = list(text_string_to_metric_families(text))
    names = collections.Counter(family.name for family in families)
    assert [name for name, count in names.items() if count > 1] == []
    untyped = [family.name for family in families if family.type in ("unknown", "untyped")]
    assert untyped == []
    return {family.name: family for family in families}


def samples(family, **labels):
    return [sample for sample in family.samples
            if all(sample.labels.get(key) == value for key, value in labels.items())]


def test_router_metrics_parse_and_count_requests_errors_and_latency(ddb, port, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "m"}})
    ddb.get_item(TableName=table, Key={"pk": {"S": "m"}})
    conftest.expect_error(lambda: ddb.get_item(TableName=table, Key={"wrong": {"S": "m"}}),
                          "ValidationException")
    families = families_of(scrape(port))
    # prometheus_client names a counter family without its _total suffix.
    requests = families["shoal_router_requests"]
    assert requests.type == "counter"
    put = samples(requests, operation="PutItem")
    assert put and put[0].value >= 1
    errors = families["shoal_router_request_errors"]
    assert samples(errors, operation="GetItem", exception="ValidationException")[0].value >= 1
    latency = families["shoal_router_request_duration_seconds"]
    assert latency.type == "histogram"
    buckets = [sample for sample in samples(latency, operation="GetItem")
               if sample.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 2
    counts = [sample.value for sample in buckets]
    assert counts == sorted(counts), "histogram buckets are cumulative"
    for name in ["shoal_router_throttled", "shoal_router_forward_retries",
                 "shoal_http_signatures_verified", "shoal_http_authentication_refused"]:
        assert name in families


def test_every_node_serves_one_whole_family_per_metric_with_every_shard():
    # A cluster of its own with two shards per node: the samples of both shards of each
    # family must come under that family's one HELP and TYPE.
    with conftest.dev_cluster_logged(["--shards-per-node", "2"]) as (url, _log):
        base_port = int(url.rsplit(":", 1)[1])
        client = conftest._client(url)
        name = conftest.unique_name("metrics")
        client.create_table(**conftest.create_table_request(name))
        client.put_item(TableName=name, Item={"pk": {"S": "node-metrics"}})
        for node in range(1, conftest.DEV_NODES + 1):
            families = families_of(
                scrape(base_port + conftest.PORT_STRIDE * node + ADMIN_PORT_OFFSET))
            replicas = families["shoal_replicas"]
            assert replicas.type == "gauge"
            shards = {sample.labels["shard"] for sample in replicas.samples}
            assert shards == {"0", "1"}, f"node {node}: {shards}"
            assert families["shoal_request_latency_us"].type == "summary"
            assert families["shoal_bus_requests_received"].type == "counter"
