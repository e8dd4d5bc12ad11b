"""Authentication and authorization, against a `shoal dev --auth` cluster of this module's own:
SigV4 signatures verified against the cluster's keys (boto3 and the AWS CLI with real
credentials, wrong secrets, unknown keys, signatures outside the 15-minute window, presigned
URLs), keys made and revoked with `shoal auth`, and what each role and table limit allows.

DynamoDB's texts, with where they were seen (DynamoDB's own answers quoted in public issues):
- "The security token included in the request is invalid." (UnrecognizedClientException,
  status 400): jcabi/jcabi-dynamo issue 101, yegor256/s3auth issue 237.
- "Signature expired: 20140218T073406Z is now earlier than 20140218T141758Z
  (20140218T143258Z - 15 min.)" (InvalidSignatureException): sebdah/dynamic-dynamodb issue
  118, aws/aws-sdk-js issue 254; "Signature not yet current: ... is still later than ...
  (... + 15 min.)" is the other side of the same check.
- "User: arn:aws:sts::...:assumed-role/... is not authorized to perform: dynamodb:PutItem on
  resource: arn:aws:dynamodb:us-east-1:...:table/... because no identity-based policy allows the
  dynamodb:PutItem action" (AccessDeniedException, 400): anomalyco/sst issue 4469,
  ministryofjustice/modernisation-platform pull request 6789. Shoal's user is the key id.
"""

import datetime
import hashlib
import http.client
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.parse
from unittest import mock

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.exceptions
import pytest

import conftest

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
UNRECOGNIZED = "The security token included in the request is invalid."
ACCOUNT = "000000000000"
# How long a test waits for a key change to reach the router (it reads the keys every 2 s).
KEY_CHANGE_WAIT_S = 10
# How long the module waits for `shoal dev --auth` to print its admin key.
ADMIN_KEY_WAIT_S = 90


class AuthCluster:
    def __init__(self, url, admin):
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.admin = admin

    def nodes(self):
        """`--node` arguments for `shoal auth`: shoal dev's layout (conftest.PORT_STRIDE)."""
        return [f"--node={index}=127.0.0.1:{self.port + conftest.PORT_STRIDE * index}"
                for index in range(1, conftest.DEV_NODES + 1)]

    def shoal_auth(self, *arguments):
        return subprocess.run(
            [str(conftest._shoal_binary()), "auth", *arguments, *self.nodes()],
            capture_output=True, text=True, timeout=90,
        )

    def create_key(self, *arguments):
        done = self.shoal_auth("create-key", *arguments)
        assert done.returncode == 0, done.stderr
        return parse_key(done.stdout)

    def client(self, key, **config):
        return boto3.client(
            "dynamodb",
            endpoint_url=self.url,
            region_name=conftest.REGION,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=botocore.config.Config(
                retries={"mode": "standard", "total_max_attempts": 1},
                read_timeout=30,
                **config,
            ),
        )


def parse_key(text):
    key_id = re.search(r"export AWS_ACCESS_KEY_ID=(\S+)", text).group(1)
    secret = re.search(r"export AWS_SECRET_ACCESS_KEY=(\S+)", text).group(1)
    return key_id, secret


@pytest.fixture(scope="module")
def cluster():
    with conftest.dev_cluster_logged(extra_args=("--auth",)) as (url, log_path):
        deadline = time.monotonic() + ADMIN_KEY_WAIT_S
        while True:
            log = pathlib.Path(log_path).read_text(errors="replace")
            if "AWS_SECRET_ACCESS_KEY=" in log:
                break
            assert time.monotonic() < deadline, f"shoal dev --auth printed no key:\n{log[-3000:]}"
            time.sleep(0.2)
        yield AuthCluster(url, parse_key(log))


@pytest.fixture(scope="module")
def admin(cluster):
    return cluster.client(cluster.admin)


def create_table(client, name, write_capacity=None):
    """An on-demand table, or a provisioned one with `write_capacity` WCU (and reads enough for
    the probes below)."""
    params = conftest.create_table_request(name)
    if write_capacity is not None:
        params.pop("BillingMode")
        params["ProvisionedThroughput"] = {
            "ReadCapacityUnits": 1000, "WriteCapacityUnits": write_capacity}
    client.create_table(**params)
    # A new table's partitions elect their leaders in about a second; writes wait for them.
    deadline = time.monotonic() + conftest.POOL_CREATE_TIMEOUT_S
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


@pytest.fixture(scope="module")
def movies(cluster, admin):
    return create_table(admin, conftest.unique_name("movies"))


@pytest.fixture(scope="module")
def books(cluster, admin):
    return create_table(admin, conftest.unique_name("books"))


def error_of(call):
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call()
    response = raised.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response[
        "ResponseMetadata"]["HTTPStatusCode"]


def denied_message(key_id, operation, table):
    return (f"User: arn:aws:iam::{ACCOUNT}:user/{key_id} is not authorized to perform: "
            f"dynamodb:{operation} on resource: arn:aws:dynamodb:{conftest.REGION}:{ACCOUNT}:"
            f"table/{table} because no identity-based policy allows the dynamodb:{operation} "
            f"action")


def signed_at(cluster, key, when, operation, payload):
    """Headers of a request signed by botocore as if the clock read `when`."""
    body = json.dumps(payload).encode()
    request = botocore.awsrequest.AWSRequest(
        method="POST", url=f"{cluster.url}/", data=body,
        headers={"Content-Type": "application/x-amz-json-1.0",
                 "X-Amz-Target": f"DynamoDB_20120810.{operation}"})
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(*key), "dynamodb",
                                conftest.REGION).add_auth(request)
    return body, dict(request.headers.items())


def post(cluster, path, body, headers):
    connection = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def test_the_key_printed_by_shoal_dev_can_do_everything(admin, movies):
    admin.put_item(TableName=movies, Item={"pk": {"S": "amelie"}, "year": {"N": "2001"}})
    item = admin.get_item(TableName=movies, Key={"pk": {"S": "amelie"}}, ConsistentRead=True)
    assert item["Item"]["year"] == {"N": "2001"}
    assert movies in admin.list_tables()["TableNames"]


def test_a_wrong_secret_is_an_invalid_signature(cluster, movies):
    wrong = cluster.client((cluster.admin[0], cluster.admin[1] + "x"))
    code, message, status = error_of(lambda: wrong.describe_table(TableName=movies))
    assert (code, message, status) == ("InvalidSignatureException", SIGNATURE_MISMATCH, 400)


def test_an_unknown_key_is_unrecognized(cluster, movies):
    stranger = cluster.client(("AKSHNOSUCHKEY0000000", "whatever"))
    code, message, status = error_of(lambda: stranger.get_item(
        TableName=movies, Key={"pk": {"S": "amelie"}}))
    assert (code, message, status) == ("UnrecognizedClientException", UNRECOGNIZED, 400)


def test_an_unsigned_request_is_missing_its_token(cluster):
    status, body = post(cluster, "/", b"{}", {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.ListTables"})
    assert status == 400
    assert body == {"__type": "com.amazon.coral.service#MissingAuthenticationTokenException",
                    "message": "Request is missing Authentication Token"}


def test_signatures_twenty_minutes_old_or_ahead_are_refused(cluster):
    for offset, pattern in [
        (-20, r"Signature expired: (\d{8}T\d{6}Z) is now earlier than (\d{8}T\d{6}Z) "
              r"\((\d{8}T\d{6}Z) - 15 min\.\)"),
        (20, r"Signature not yet current: (\d{8}T\d{6}Z) is still later than (\d{8}T\d{6}Z) "
             r"\((\d{8}T\d{6}Z) \+ 15 min\.\)"),
    ]:
        when = utc_now() + datetime.timedelta(minutes=offset)
        body, headers = signed_at(cluster, cluster.admin, when, "ListTables", {})
        status, reply = post(cluster, "/", body, headers)
        assert status == 400
        assert reply["__type"] == "com.amazon.coral.service#InvalidSignatureException"
        match = re.fullmatch(pattern, reply["message"])
        assert match, reply["message"]
        assert match.group(1) == when.strftime("%Y%m%dT%H%M%SZ")
    # Within the window (ten minutes off) is fine.
    body, headers = signed_at(cluster, cluster.admin, utc_now() - datetime.timedelta(minutes=10),
                              "ListTables", {})
    assert post(cluster, "/", body, headers)[0] == 200


def presigned(cluster, key, payload, operation, expires, when=None):
    """A presigned POST: botocore's SigV4QueryAuth, with the body's hash declared (and signed)
    in X-Amz-Content-SHA256, since DynamoDB's requests carry a JSON body."""
    body = json.dumps(payload).encode()
    request = botocore.awsrequest.AWSRequest(
        method="POST", url=f"{cluster.url}/",
        headers={"X-Amz-Target": f"DynamoDB_20120810.{operation}",
                 "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    with mock.patch("botocore.auth.get_current_datetime", return_value=when or utc_now()):
        botocore.auth.SigV4QueryAuth(botocore.credentials.Credentials(*key), "dynamodb",
                                     conftest.REGION, expires=expires).add_auth(request)
    split = urllib.parse.urlsplit(request.url)
    return f"{split.path}?{split.query}", body, dict(request.headers.items())


def test_presigned_urls_work_until_they_expire(cluster, movies):
    path, body, headers = presigned(cluster, cluster.admin, {"TableName": movies},
                                    "DescribeTable", expires=300)
    assert "Authorization" not in headers
    status, reply = post(cluster, path, body, headers)
    assert status == 200, reply
    assert reply["Table"]["TableName"] == movies
    # Another body under the same URL is refused.
    status, reply = post(cluster, path, json.dumps({"TableName": "other"}).encode(), headers)
    assert reply["__type"] == "com.amazon.coral.service#InvalidSignatureException"
    # Signed two minutes ago for 60 seconds: expired.
    path, body, headers = presigned(cluster, cluster.admin, {"TableName": movies},
                                    "DescribeTable", expires=60,
                                    when=utc_now() - datetime.timedelta(minutes=2))
    status, reply = post(cluster, path, body, headers)
    assert status == 400
    assert reply["__type"] == "com.amazon.coral.service#InvalidSignatureException"
    assert reply["message"].startswith("Signature expired: ")


def test_a_read_only_key_reads_and_is_denied_writes(cluster, movies):
    key = cluster.create_key("--role", "read-only")
    reader = cluster.client(key)
    # A key just created works at once (a router reads the keys again on an unknown key).
    reader.get_item(TableName=movies, Key={"pk": {"S": "amelie"}})
    reader.describe_table(TableName=movies)
    reader.list_tables()
    code, message, status = error_of(lambda: reader.put_item(
        TableName=movies, Item={"pk": {"S": "nope"}}))
    assert (code, status) == ("AccessDeniedException", 400)
    assert message == denied_message(key[0], "PutItem", movies)
    code, message, _ = error_of(lambda: reader.delete_table(TableName=movies))
    assert message == denied_message(key[0], "DeleteTable", movies)
    assert admin_sees(cluster, movies, "nope") is None


def admin_sees(cluster, table, pk):
    item = cluster.client(cluster.admin).get_item(
        TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True)
    return item.get("Item")


def test_a_read_write_key_writes_items_but_not_tables(cluster, movies):
    key = cluster.create_key("--role", "read-write")
    writer = cluster.client(key)
    writer.put_item(TableName=movies, Item={"pk": {"S": "written"}})
    writer.batch_write_item(RequestItems={movies: [{"PutRequest": {"Item": {"pk": {"S": "b"}}}}]})
    assert admin_sees(cluster, movies, "written") == {"pk": {"S": "written"}}
    name = conftest.unique_name("denied")
    code, message, _ = error_of(lambda: writer.create_table(**conftest.create_table_request(name)))
    assert code == "AccessDeniedException"
    assert message == denied_message(key[0], "CreateTable", name)
    arn = f"arn:aws:dynamodb:{conftest.REGION}:{ACCOUNT}:table/{movies}"
    code, message, _ = error_of(lambda: writer.tag_resource(
        ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]))
    assert message == denied_message(key[0], "TagResource", movies)


def test_a_key_limited_to_tables_reaches_only_those(cluster, movies, books):
    key = cluster.create_key("--role", "read-write", "--tables", movies)
    limited = cluster.client(key)
    limited.put_item(TableName=movies, Item={"pk": {"S": "limited"}})
    code, message, _ = error_of(lambda: limited.put_item(
        TableName=books, Item={"pk": {"S": "limited"}}))
    assert (code, message) == ("AccessDeniedException", denied_message(key[0], "PutItem", books))
    # A batch naming one table outside the limit is refused whole.
    code, message, _ = error_of(lambda: limited.batch_get_item(RequestItems={
        movies: {"Keys": [{"pk": {"S": "limited"}}]},
        books: {"Keys": [{"pk": {"S": "limited"}}]},
    }))
    assert (code, message) == ("AccessDeniedException",
                               denied_message(key[0], "BatchGetItem", books))
    # ListTables would show every table.
    code, message, _ = error_of(limited.list_tables)
    assert (code, message) == ("AccessDeniedException", denied_message(key[0], "ListTables", "*"))
    assert admin_sees(cluster, books, "limited") is None


def test_keys_are_listed_without_secrets_and_revoked(cluster, movies):
    key = cluster.create_key("--role", "read-only", "--tables", movies)
    listed = cluster.shoal_auth("list-keys")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(key[0]))
    assert line.split()[1] == "read-only" and line.split()[-1] == movies
    assert key[1] not in listed.stdout
    client = cluster.client(key)
    client.describe_table(TableName=movies)
    revoked = cluster.shoal_auth("revoke-key", key[0])
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + KEY_CHANGE_WAIT_S
    while True:
        try:
            client.describe_table(TableName=movies)
        except botocore.exceptions.ClientError as error:
            assert error.response["Error"]["Code"] == "UnrecognizedClientException"
            break
        assert time.monotonic() < deadline, "a revoked key still works"
        time.sleep(0.2)
    again = cluster.shoal_auth("revoke-key", key[0])
    assert again.returncode == 1 and "no access key" in again.stderr


def test_bad_cli_input_is_refused(cluster):
    assert cluster.shoal_auth("create-key", "--role", "root").returncode == 2
    assert cluster.shoal_auth("create-key", "--tables", "a").returncode == 2


def test_refused_requests_leave_the_tables_capacity_untouched(cluster):
    """A provisioned table with 1 WCU starts with 300 s of burst credit (300 WCU); a 350 KB put
    costs about 342 WCU and leaves it in debt for a minute. Refused 350 KB puts (a read-only
    key, a wrong secret) must cost nothing: a put after them is admitted."""
    admin = cluster.client(cluster.admin)
    table = create_table(admin, conftest.unique_name("capacity"), write_capacity=1)
    big = {"pk": {"S": "big"}, "blob": {"S": "x" * 350_000}}
    reader = cluster.client(cluster.create_key("--role", "read-only"))
    forger = cluster.client((cluster.admin[0], "not the secret"))
    for _ in range(3):
        assert error_of(lambda: reader.put_item(TableName=table, Item=big))[0] == \
            "AccessDeniedException"
        assert error_of(lambda: forger.put_item(TableName=table, Item=big))[0] == \
            "InvalidSignatureException"
    admin.put_item(TableName=table, Item=big)
    # The control: that admitted put was charged, so the table is now throttled.
    code, _, _ = error_of(lambda: admin.put_item(TableName=table, Item={"pk": {"S": "next"}}))
    assert code == "ProvisionedThroughputExceededException"


def test_the_aws_cli_works_with_a_real_key_and_not_with_a_wrong_one(cluster, movies):
    aws = pathlib.Path(sys.executable).with_name("aws")
    if not aws.exists():
        pytest.skip("the AWS CLI is not installed next to this python (run.sh installs it)")
    base = {**os.environ, "AWS_DEFAULT_REGION": conftest.REGION, "AWS_PAGER": "",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    def run(key):
        environment = {**base, "AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1]}
        return subprocess.run(
            # Through this python: a venv copied elsewhere keeps a stale shebang in `aws`.
            [sys.executable, str(aws), "dynamodb", "describe-table", "--table-name", movies,
             "--endpoint-url", cluster.url, "--output", "json"],
            capture_output=True, text=True, env=environment, timeout=60)

    good = run(cluster.admin)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["Table"]["TableName"] == movies
    bad = run((cluster.admin[0], "wrong"))
    assert bad.returncode != 0
    assert "InvalidSignatureException" in bad.stderr
