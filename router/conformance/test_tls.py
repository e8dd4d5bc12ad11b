"""TLS on the DynamoDB API, against a `shoal dev --tls` cluster of this module's own: the
self-signed certificate it makes for 127.0.0.1 and localhost is trusted by boto3 (`verify=`),
the AWS CLI (`AWS_CA_BUNDLE`) and Python's ssl module when they are given it, and refused by
clients that trust other CAs; plaintext HTTP on the port is refused with an answer that says
why, and the router keeps serving.
"""

import http.client
import os
import pathlib
import ssl
import subprocess
import sys
import time

import boto3
import botocore.config
import botocore.exceptions
import pytest

import conftest

# The cluster's partitions elect their leaders within seconds of CreateTable.
TABLE_READY_TIMEOUT_S = conftest.POOL_CREATE_TIMEOUT_S


class TlsCluster:
    def __init__(self, url, certificate, log_path):
        self.url = url
        self.certificate = certificate
        self.log_path = log_path
        self.port = int(url.rsplit(":", 1)[1])

    def client(self, verify, url=None):
        return boto3.client(
            "dynamodb",
            endpoint_url=url or self.url,
            region_name=conftest.REGION,
            aws_access_key_id=conftest.ACCESS_KEY,
            aws_secret_access_key=conftest.SECRET_KEY,
            verify=verify,
            config=botocore.config.Config(
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=10, read_timeout=30),
        )


@pytest.fixture(scope="module")
def cluster():
    with conftest.dev_cluster_logged(extra_args=("--tls",)) as (url, log_path):
        yield TlsCluster(url, conftest.dev_tls_certificate(log_path), log_path)


def create_table(client, name):
    client.create_table(**conftest.create_table_request(name))
    deadline = time.monotonic() + TABLE_READY_TIMEOUT_S
    while True:
        try:
            client.get_item(TableName=name, Key={"pk": {"S": "probe"}}, ConsistentRead=True)
            return name
        except botocore.exceptions.ClientError as error:
            if time.monotonic() > deadline:
                raise
            if error.response["Error"]["Code"] not in (
                    "ResourceNotFoundException", "InternalServerError", "ServiceUnavailable"):
                raise
            time.sleep(0.2)


def test_the_api_speaks_https_and_dev_says_how_to_trust_it(cluster):
    assert cluster.url.startswith("https://127.0.0.1:")
    log = pathlib.Path(cluster.log_path).read_text(errors="replace")
    assert f"DynamoDB API: {cluster.url}" in log, log
    assert f"AWS_CA_BUNDLE={cluster.certificate}" in log, log
    assert f'verify="{cluster.certificate}"' in log, log
    assert cluster.certificate.exists()
    key = cluster.certificate.with_name("key.pem")
    assert (key.stat().st_mode & 0o777) == 0o600, oct(key.stat().st_mode)


def test_boto3_round_trip_over_tls(cluster):
    client = cluster.client(verify=str(cluster.certificate))
    table = create_table(client, conftest.unique_name("tls"))
    item = {"pk": {"S": "film"}, "title": {"S": "Amélie"}, "year": {"N": "2001"}}
    client.put_item(TableName=table, Item=item)
    got = client.get_item(TableName=table, Key={"pk": {"S": "film"}}, ConsistentRead=True)
    assert got["Item"] == item
    # The certificate names localhost too.
    by_name = cluster.client(verify=str(cluster.certificate),
                             url=cluster.url.replace("127.0.0.1", "localhost"))
    assert table in by_name.list_tables()["TableNames"]


def test_a_client_trusting_other_cas_refuses_the_certificate(cluster):
    # boto3's default trust store (certifi's public CAs) did not sign the dev certificate.
    with pytest.raises(botocore.exceptions.SSLError) as raised:
        cluster.client(verify=True).list_tables()
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value), raised.value
    # Python's ssl module with the system's CAs: the handshake fails on the client side.
    context = ssl.create_default_context()
    connection = http.client.HTTPSConnection("127.0.0.1", cluster.port, timeout=10,
                                             context=context)
    with pytest.raises(ssl.SSLCertVerificationError):
        connection.request("GET", "/")
    connection.close()
    # The router is still serving a client that trusts the certificate.
    assert "TableNames" in cluster.client(verify=str(cluster.certificate)).list_tables()


def test_plaintext_http_on_the_tls_port_is_refused_with_a_reason(cluster):
    connection = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=10)
    connection.request("POST", "/", body=b"{}", headers={
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "Content-Type": "application/x-amz-json-1.0"})
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    assert response.status == 400
    assert "TLS only" in body and "https://" in body, body
    # An HTTP client of the right scheme, in the same moment, is served.
    assert "TableNames" in cluster.client(verify=str(cluster.certificate)).list_tables()


def test_the_aws_cli_trusts_the_certificate_through_aws_ca_bundle(cluster):
    aws = pathlib.Path(sys.executable).with_name("aws")
    if not aws.exists():
        pytest.skip("the AWS CLI is not installed next to this python (run.sh installs it)")
    base = {**os.environ, "AWS_DEFAULT_REGION": conftest.REGION, "AWS_PAGER": "",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_ACCESS_KEY_ID": conftest.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": conftest.SECRET_KEY}
    base.pop("AWS_CA_BUNDLE", None)

    def run(environment):
        return subprocess.run(
            # Through this python: a venv copied elsewhere keeps a stale shebang in `aws`.
            [sys.executable, str(aws), "dynamodb", "list-tables", "--endpoint-url", cluster.url,
             "--output", "json"],
            capture_output=True, text=True, env=environment, timeout=60)

    trusted = run({**base, "AWS_CA_BUNDLE": str(cluster.certificate)})
    assert trusted.returncode == 0, trusted.stderr
    assert "TableNames" in trusted.stdout
    untrusted = run(base)
    assert untrusted.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr
