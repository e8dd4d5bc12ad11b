"""Fixtures of the DynamoDB conformance suite.

One `shoal dev` cluster (3 nodes and a router) serves the whole session on a free loopback
port, in a temporary data directory. Every test makes its own uniquely named tables, so tests
do not see each other's items and may run in any order.
"""

import collections
import concurrent.futures
import contextlib
import gzip
import http.client
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCESS_KEY = "AKIDCONFORMANCE"
SECRET_KEY = "conformance-secret"
# `shoal dev --port P` uses P, and per node i (1..3) P + 100*i .. P + 100*i + 99 (bus shards,
# admin). These are the ports we check are free before choosing P.
DEV_NODES = 3
PORT_STRIDE = 100
# How long the cluster may take to elect its metadata leader and start serving.
STARTUP_TIMEOUT_S = 120
# How long it gets to stop after SIGTERM before it is killed (shoal dev itself gives its
# children 10 s).
STOP_GRACE_S = 20
PORT_PICK_ATTEMPTS = 50
# Test ports lie between this and the start of the ephemeral range (Linux's default start when
# /proc cannot be read).
LOWEST_TEST_PORT = 20000
DEFAULT_EPHEMERAL_START = 32768
# How long a test waits for the pool to create its table.
POOL_CREATE_TIMEOUT_S = 45
# Seconds between Time to Live sweeps of a partition in the suite's clusters (`shoal dev
# --ttl-sweep-period-seconds`): short, so that test_ttl.py sees items expire.
TTL_SWEEP_PERIOD_S = 1


def _shoal_binary():
    explicit = os.environ.get("SHOAL_BIN")
    if explicit:
        return pathlib.Path(explicit)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    for profile in ("release", "debug"):
        candidate = target / profile / "shoal"
        if candidate.exists():
            return candidate
    raise RuntimeError(
        f"no shoal binary: set SHOAL_BIN or build it (looked in {target}/release and {target}/debug)"
    )


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_start():
    """The first port of the kernel's ephemeral range. Outgoing connections take their local
    port from it, so a port chosen there can be taken between choosing it and `shoal dev`
    binding it; the ports chosen here stay below it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_START


def _pick_base_port():
    """A port P with P and every node's bus, shard and admin ports free."""
    rng = random.Random()
    for _ in range(PORT_PICK_ATTEMPTS):
        base = rng.randrange(LOWEST_TEST_PORT, _ephemeral_start() - PORT_STRIDE * (DEV_NODES + 1), 10)
        needed = [base]
        for node in range(1, DEV_NODES + 1):
            needed += [base + PORT_STRIDE * node, base + PORT_STRIDE * node + 99]
        if all(_port_free(port) for port in needed):
            return base
    raise RuntimeError("no free port range for shoal dev")


def _healthy(port, ca_path=None):
    """Whether the router answers its health check; over HTTPS, trusting `ca_path`, when
    given (`shoal dev --tls`, whose certificate appears once `shoal dev` made it)."""
    try:
        if ca_path is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        else:
            if not pathlib.Path(ca_path).exists():
                return False
            context = ssl.create_default_context(cafile=str(ca_path))
            connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status == 200
    except OSError:
        return False


def _interrupt_on_sigterm(signum, frame):
    # `timeout` (run.sh) stops a run with SIGTERM: turn it into an interrupt so pytest runs
    # the session teardown and the cluster is stopped, not left behind.
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def dev_cluster():
    """Starts `shoal dev` on a free port range in a temporary data directory, waits for its
    health check, yields its URL, and stops it (SIGTERM, then SIGKILL of its process group)."""
    with dev_cluster_logged() as (url, _log_path):
        yield url


@contextlib.contextmanager
def dev_cluster_logged(extra_args=()):
    """`dev_cluster` with more `shoal dev` arguments (`--auth`, `--tls`), yielding the URL and
    the path of the cluster's log (where `shoal dev --auth` prints its key). With `--tls` the
    URL is https:// and the certificate to trust is `dev_tls_certificate(log_path)`."""
    binary = _shoal_binary()
    data_dir = tempfile.mkdtemp(prefix="shoal-conformance-")
    port = _pick_base_port()
    log_path = pathlib.Path(data_dir) / "shoal-dev.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [str(binary), "dev", "--data-dir", str(pathlib.Path(data_dir) / "data"), "--port", str(port),
         "--ttl-sweep-period-seconds", str(TTL_SWEEP_PERIOD_S), *extra_args],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def log_tail():
        log.flush()
        return log_path.read_bytes()[-4000:].decode(errors="replace")

    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        tls = "--tls" in extra_args
        ca_path = dev_tls_certificate(log_path) if tls else None
        while not _healthy(port, ca_path):
            if process.poll() is not None:
                raise RuntimeError(f"shoal dev exited with {process.returncode}:\n{log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"shoal dev not healthy within {STARTUP_TIMEOUT_S}s:\n{log_tail()}")
            time.sleep(0.2)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        # shoal dev puts its children in their own process groups, inside the session we
        # started it in: kill whatever of that session is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_S)
        log.close()
        if os.environ.get("CONFORMANCE_KEEP_DATA"):
            print(f"shoal dev data and log kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def dev_tls_certificate(log_path):
    """Where `shoal dev --tls` keeps its self-signed certificate (`<data-dir>/tls/cert.pem`),
    for the cluster whose log is `log_path`."""
    return pathlib.Path(log_path).parent / "data" / "tls" / "cert.pem"


@pytest.fixture(scope="session")
def endpoint():
    """The URL of the session's `shoal dev` cluster."""
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    with dev_cluster() as url:
        yield url


@pytest.fixture
def isolated_client():
    """A client of a cluster of the test's own, for a test that may bring its cluster down
    (a known crash must not take the rest of the suite with it). Few retries and a short read
    timeout: a dead cluster fails the test quickly."""
    with dev_cluster() as url:
        yield _client(url, retries={"mode": "standard", "total_max_attempts": 1},
                      read_timeout=15)


@pytest.fixture(scope="session")
def port(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


def _client(endpoint, service="dynamodb", **config):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=botocore.config.Config(
            **{
                # Few retries: a conformance failure must not hide behind them, but a leader
                # election in progress may answer one retryable error.
                "retries": {"mode": "standard", "total_max_attempts": 3},
                "connect_timeout": 10,
                "read_timeout": 30,
                **config,
            }
        ),
    )


@pytest.fixture(scope="session")
def ddb(endpoint):
    return _client(endpoint)


@pytest.fixture(scope="session")
def streams(endpoint):
    """A DynamoDB Streams client (X-Amz-Target DynamoDBStreams_20120810.*) of the same cluster:
    DynamoDB serves Streams on an endpoint of its own, Shoal's router on the same one."""
    return _client(endpoint, service="dynamodbstreams")


@pytest.fixture(scope="session")
def resource(endpoint):
    return boto3.resource(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def unique_name(prefix="conf"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_table_request(name, hash_key=("pk", "S"), sort=None, billing="PAY_PER_REQUEST"):
    schema = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    definitions = [{"AttributeName": hash_key[0], "AttributeType": hash_key[1]}]
    if sort:
        schema.append({"AttributeName": sort[0], "KeyType": "RANGE"})
        definitions.append({"AttributeName": sort[0], "AttributeType": sort[1]})
    params = dict(TableName=name, KeySchema=schema, AttributeDefinitions=definitions)
    if billing == "PAY_PER_REQUEST":
        params["BillingMode"] = "PAY_PER_REQUEST"
    else:
        params["ProvisionedThroughput"] = {"ReadCapacityUnits": 100, "WriteCapacityUnits": 100}
    return params


class TablePool:
    """Tables created ahead of the tests that take them.

    A new table's partitions elect their first leaders within a few hundred milliseconds of
    CreateTable (which answers at once; a new group's replicas campaign after a tenth of the
    election timeout, issue 21); a test's first write would wait for that. The pool creates
    each schema's tables a few ahead on a background thread, so a test takes one that has had
    time to elect. Every table is still used by one test only.
    """

    # How long after CreateTable a table is handed out at the earliest (a first write before
    # the leaders are elected waits for them, it does not fail).
    WARM_S = 0.3
    # Tables kept ahead per schema at most.
    DEPTH = 2

    def __init__(self, endpoint):
        self.client = _client(endpoint)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.lock = threading.Lock()
        self.queues = {}
        self.taken = {}

    def _create(self, spec):
        name = unique_name()
        self.client.create_table(**create_table_request(name, *spec))
        return name, time.monotonic()

    def _submit(self, spec):
        return self.executor.submit(self._create, spec)

    def take(self, spec):
        with self.lock:
            queue = self.queues.setdefault(spec, collections.deque())
            taken = self.taken.get(spec, 0) + 1
            self.taken[spec] = taken
            if not queue:
                queue.append(self._submit(spec))
            future = queue.popleft()
            # Keep as many ahead as the schema has been asked for, up to DEPTH: a schema one
            # test uses costs no spare tables.
            while len(queue) < min(self.DEPTH, taken):
                queue.append(self._submit(spec))
        name, created = future.result(timeout=POOL_CREATE_TIMEOUT_S)
        time.sleep(max(0.0, created + self.WARM_S - time.monotonic()))
        return name

    def close(self):
        """Deletes the tables no test took."""
        with self.lock:
            pending = [future for queue in self.queues.values() for future in queue]
            self.queues.clear()
        for future in pending:
            if future.cancel():
                continue
            with contextlib.suppress(Exception):
                name, _ = future.result(timeout=60)
                self.client.delete_table(TableName=name)
        self.executor.shutdown(wait=True)


@pytest.fixture(scope="session")
def table_pool(endpoint):
    pool = TablePool(endpoint)
    yield pool
    pool.close()


def _table_factory(ddb, table_pool):
    created = []

    def make(hash_key=("pk", "S"), sort=None, billing="PAY_PER_REQUEST"):
        name = table_pool.take((hash_key, sort, billing))
        created.append(name)
        return name

    def cleanup():
        for name in created:
            with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
                ddb.delete_table(TableName=name)

    return make, cleanup


@pytest.fixture
def make_table(ddb, table_pool):
    """Tables for one test, deleted after it.

    make_table() is a table with partition key `pk` (S); make_table(sort=("sk", "N")) adds a
    sort key; make_table(hash_key=("id", "N")) changes the partition key; billing="PROVISIONED"
    gives it 100 RCU / 100 WCU. Each is a new, uniquely named table.
    """
    make, cleanup = _table_factory(ddb, table_pool)
    yield make
    cleanup()


@pytest.fixture(scope="module")
def make_module_table(ddb, table_pool):
    """Like make_table, but the tables live until the module's last test: for data that many
    read-only tests (parametrized cases above all) query without changing it.

    Why not a table per case: DeleteTable leaves the partitions' replicas on the nodes
    (router/server/README.md), and every replica costs the nodes work, so a suite that makes
    hundreds of tables slows itself down.
    """
    make, cleanup = _table_factory(ddb, table_pool)
    yield make
    cleanup()


@pytest.fixture
def table(make_table):
    """A fresh table with partition key `pk` (S)."""
    return make_table()


@pytest.fixture
def sorted_table(make_table):
    """A fresh table with partition key `pk` (S) and sort key `sk` (N)."""
    return make_table(sort=("sk", "N"))


class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def error_type(self):
        """The exception name of an error body, without its namespace (as SDKs read it)."""
        return self.json()["__type"].rsplit("#", 1)[-1]


class Raw:
    """HTTP requests built by hand, signed with SigV4 unless told otherwise: for what an SDK
    never sends (bad JSON, unknown targets, missing headers, compressed bodies)."""

    def __init__(self, port):
        self.port = port

    def signed_headers(self, target, body, extra=None):
        request = botocore.awsrequest.AWSRequest(
            method="POST",
            url=f"http://127.0.0.1:{self.port}/",
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": target,
                **(extra or {}),
            },
        )
        credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
        botocore.auth.SigV4Auth(credentials, "dynamodb", REGION).add_auth(request)
        return dict(request.headers.items())

    def send(self, method="POST", path="/", body=b"", headers=None, timeout=30):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return RawResponse(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def call(self, operation, payload, extra_headers=None, sign=True, raw_body=None,
             target=None):
        body = raw_body if raw_body is not None else json.dumps(payload).encode()
        target = target or f"DynamoDB_20120810.{operation}"
        if sign:
            headers = self.signed_headers(target, body, extra_headers)
        else:
            headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target,
                       **(extra_headers or {})}
        return self.send(body=body, headers=headers)


@pytest.fixture(scope="session")
def raw(port):
    return Raw(port)


def gunzip_if_needed(response):
    if response.headers.get("Content-Encoding", "").lower() == "gzip":
        return gzip.decompress(response.body)
    return response.body


# Setup writes that a fast run pushes past a new table's throughput (DynamoDB's own: an
# on-demand table serves 4,000 WCU a second at once, a partition 1,000) are sent again while
# throttled, as an SDK with more retries would; only this many throttles in a row fail them.
SETUP_THROTTLES_MAX = 100
SETUP_THROTTLE_PAUSE_S = 0.1


def put_admitted(ddb, **parameters):
    """PutItem for a test's setup, sent again while throttled."""
    for _ in range(SETUP_THROTTLES_MAX):
        try:
            return ddb.put_item(**parameters)
        except ddb.exceptions.ProvisionedThroughputExceededException:
            time.sleep(SETUP_THROTTLE_PAUSE_S)
    raise AssertionError(f"a setup write was throttled {SETUP_THROTTLES_MAX} times in a row")


def batch_write_admitted(ddb, table, requests):
    """BatchWriteItem of `requests` for a test's setup, 25 at a time, sending again what was
    throttled or left unprocessed."""
    pending = list(requests)
    throttles = 0
    while pending:
        chunk, pending = pending[:25], pending[25:]
        try:
            response = ddb.batch_write_item(RequestItems={table: chunk})
        except ddb.exceptions.ProvisionedThroughputExceededException:
            throttles += 1
            assert throttles < SETUP_THROTTLES_MAX, "setup writes throttled too often"
            pending = chunk + pending
            time.sleep(SETUP_THROTTLE_PAUSE_S)
            continue
        throttles = 0
        pending = response.get("UnprocessedItems", {}).get(table, []) + pending


def expect_error(call, code, message=None, contains=None):
    """Runs `call`, which must fail with DynamoDB error `code` (and `message` exactly, or a
    message containing `contains`); returns the botocore error response."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        call()
    error = info.value.response["Error"]
    assert error["Code"] == code, error
    if message is not None:
        assert error["Message"] == message
    if contains is not None:
        assert contains in error["Message"], error["Message"]
    return info.value.response
