"""The HTTP front end: requests an SDK never sends (bad JSON, unknown targets, missing or
malformed authentication), compression both ways, response headers, the health check, CORS,
chunked bodies and the statuses of oversized requests. Where DynamoDB's answer was recorded by a
public test suite, the case says which."""

import gzip
import json
import zlib

import pytest

from conftest import gunzip_if_needed


def test_health_check(raw):
    response = raw.send(method="GET", path="/")
    assert response.status == 200
    assert response.body.decode().startswith("healthy: ")


def test_bad_json_is_a_serialization_exception(raw):
    response = raw.call("ListTables", None, raw_body=b'{"Limit": ')
    assert response.status == 400
    assert response.error_type == "SerializationException"
    assert response.json()["__type"] == "com.amazon.coral.service#SerializationException"


def test_body_that_is_not_an_object_is_a_serialization_exception(raw):
    response = raw.call("ListTables", None, raw_body=b'[1, 2]')
    assert response.status == 400
    assert response.error_type == "SerializationException"


def test_unknown_target_is_an_unknown_operation(raw):
    for target in ("DynamoDB_20120810.NoSuchOperation", "DynamoDB_20111205.ListTables", "nonsense"):
        response = raw.call(None, {}, target=target)
        assert response.status == 400
        assert response.json()["__type"] == "com.amazon.coral.service#UnknownOperationException"


def test_missing_authorization_is_missing_authentication_token(raw):
    response = raw.call("ListTables", {}, sign=False)
    assert response.status in (400, 403)
    assert response.error_type == "MissingAuthenticationTokenException"
    assert response.json()["message"] == "Request is missing Authentication Token"


def test_malformed_authorization_is_incomplete_signature(raw):
    response = raw.call("ListTables", {}, sign=False,
                        extra_headers={"Authorization": "AWS4-HMAC-SHA256 Credential=abc"})
    assert response.status in (400, 403)
    assert response.error_type == "IncompleteSignatureException"


def test_validation_errors_use_the_coral_validate_namespace(raw):
    response = raw.call("ListTables", {"Limit": 0})
    assert response.status == 400
    assert response.json()["__type"] == "com.amazon.coral.validate#ValidationException"
    assert "message" in response.json()


def test_dynamodb_errors_use_the_dynamodb_namespace(raw):
    response = raw.call("DescribeTable", {"TableName": "conf-no-such-table"})
    assert response.status == 400
    assert response.json()["__type"] == "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"


def test_success_headers(raw):
    response = raw.call("ListTables", {"Limit": 1})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-amz-json-1.0"
    assert response.headers.get("x-amzn-RequestId")
    # botocore checks x-amz-crc32 against the bytes it receives.
    assert int(response.headers["x-amz-crc32"]) == zlib.crc32(response.body)
    assert "TableNames" in response.json()


def test_gzip_request_body(raw, ddb, table):
    payload = {"TableName": table, "Item": {"pk": {"S": "gz"}, "v": {"S": "zipped"}}}
    response = raw.call("PutItem", None, raw_body=gzip.compress(json.dumps(payload).encode()),
                        extra_headers={"Content-Encoding": "gzip"})
    assert response.status == 200, response.body
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "gz"}}, ConsistentRead=True)
    assert got["Item"]["v"] == {"S": "zipped"}


# DynamoDB answers an undecodable body, and an unknown Content-Encoding, with 500
# InternalServerError (ScyllaDB's test/alternator/test_compressed_request.py, run against
# DynamoDB: test_broken_gzip_content, test_gzip_request_with_missing_character,
# test_gzip_request_empty, test_garbage_content_encoding).
@pytest.mark.parametrize("encoding, body", [
    ("gzip", b"\x1f\x8b not gzip at all"),
    ("gzip", b'{"Limit": 1}'),
    ("gzip", gzip.compress(b'{"Limit": 1}')[:-1]),
    ("gzip", b""),
    ("gzip", gzip.compress(b'{"Limit": 1}') + b"junk"),
    ("garbage", b'{"Limit": 1}'),
], ids=["garbage", "not-compressed", "truncated", "empty", "trailing-junk", "unknown-encoding"])
def test_undecodable_body_is_an_internal_server_error(raw, encoding, body):
    response = raw.call("ListTables", None, raw_body=body,
                        extra_headers={"Content-Encoding": encoding})
    assert response.status == 500
    assert response.error_type == "InternalServerError"


# Two gzip members are one body (test_gzip_request_two_gzips passes against DynamoDB).
def test_gzip_body_of_two_members(raw, ddb, table):
    payload = json.dumps({"TableName": table, "Item": {"pk": {"S": "two"}, "v": {"S": "gz"}}})
    body = gzip.compress(payload[:10].encode()) + gzip.compress(payload[10:].encode())
    response = raw.call("PutItem", None, raw_body=body, extra_headers={"Content-Encoding": "gzip"})
    assert response.status == 200, response.body
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "two"}}, ConsistentRead=True)
    assert got["Item"]["v"] == {"S": "gz"}


def test_gzip_bomb_is_refused_for_its_inflated_size(raw):
    body = gzip.compress(b'{"Limit": 1' + b" " * (16 * 1024 * 1024) + b"}")
    response = raw.call("ListTables", None, raw_body=body, extra_headers={"Content-Encoding": "gzip"})
    assert response.status == 413


def test_gzip_response_when_accepted(raw, ddb, table):
    ddb.put_item(TableName=table, Item={"pk": {"S": "big"}, "d": {"S": "y" * 4096}})
    payload = {"TableName": table, "Key": {"pk": {"S": "big"}}, "ConsistentRead": True}
    response = raw.call("GetItem", payload, extra_headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers.get("Content-Encoding") == "gzip"
    # The checksum covers the bytes sent (compressed), as botocore expects.
    assert int(response.headers["x-amz-crc32"]) == zlib.crc32(response.body)
    assert json.loads(gunzip_if_needed(response))["Item"]["d"]["S"] == "y" * 4096
    plain = raw.call("GetItem", payload)
    assert "Content-Encoding" not in plain.headers
    assert plain.json() == json.loads(gunzip_if_needed(response))


def test_keep_alive_serves_several_requests_on_one_connection(port, raw):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(3):
            body = b"{}"
            connection.request("POST", "/", body=body,
                               headers=raw.signed_headers("DynamoDB_20120810.ListTables", body))
            response = connection.getresponse()
            assert response.status == 200
            assert "TableNames" in json.loads(response.read())
    finally:
        connection.close()


# CORS, as DynamoDB answers it: a preflight with an Origin is 200 with an empty body,
# Access-Control-Allow-Origin *, the requested method and headers echoed, DynamoDB's exposed
# headers and a max age of 172800 s (recorded from dynamodb.us-east-1.amazonaws.com in
# AllanZhengYP/cors-test output.md; dynalite's test/connection.js; ScyllaDB's
# test/alternator/test_cors.py). A browser sends it unsigned.
CORS_EXPOSED = "x-amzn-RequestId,x-amzn-ErrorType,x-amzn-ErrorMessage,Date"


def test_cors_preflight_needs_no_signature(raw):
    requested = "content-type,x-amz-target,x-amz-date,authorization,amz-sdk-invocation-id"
    for path in ("/", "/some/path"):
        response = raw.send(method="OPTIONS", path=path, headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": requested,
        })
        assert response.status == 200
        assert response.body == b""
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Access-Control-Allow-Methods"] == "POST"
        assert response.headers["Access-Control-Allow-Headers"] == requested
        assert response.headers["Access-Control-Expose-Headers"] == CORS_EXPOSED
        assert response.headers["Access-Control-Max-Age"] == "172800"


def test_cross_origin_calls_carry_cors_headers(raw):
    ok = raw.call("ListTables", {"Limit": 1}, extra_headers={"Origin": "https://app.example"})
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "*"
    assert ok.headers["Access-Control-Expose-Headers"] == CORS_EXPOSED
    assert "Access-Control-Max-Age" not in ok.headers
    # Still authenticated as always: an unsigned call is refused, with the CORS headers so
    # the browser application can read why.
    unsigned = raw.call("ListTables", {}, sign=False, extra_headers={"Origin": "https://app.example"})
    assert unsigned.error_type == "MissingAuthenticationTokenException"
    assert unsigned.headers["Access-Control-Allow-Origin"] == "*"
    # No Origin, no CORS headers.
    plain = raw.call("ListTables", {"Limit": 1})
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_chunked_body(raw, ddb, table):
    import http.client

    payload = json.dumps({"TableName": table, "Item": {"pk": {"S": "chunked"}}}).encode()
    headers = raw.signed_headers("DynamoDB_20120810.PutItem", payload)
    headers.pop("Content-Length", None)
    connection = http.client.HTTPConnection("127.0.0.1", raw.port, timeout=30)
    try:
        # http.client frames an iterable body with Transfer-Encoding: chunked.
        connection.request("POST", "/", body=iter([payload[:7], payload[7:]]), headers=headers,
                           encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 200, response.read()
    finally:
        connection.close()
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "chunked"}}, ConsistentRead=True)
    assert "Item" in got


# A body past 16 MB is 413 (test_too_large_request_content_length passes against DynamoDB), and
# the client, still sending, reads it.
def test_oversized_body_is_413(raw):
    body = b'{"Limit": 1' + b" " * (16 * 1024 * 1024) + b"}"
    response = raw.call("ListTables", None, raw_body=body)
    assert response.status == 413


# A request line or headers past 16 KB are 400 Bad Request, as DynamoDB answers (the tests of
# scylladb/scylladb pull request 23442, which pass against DynamoDB).
def test_oversized_head_is_400(raw):
    response = raw.send(method="GET", path="/" + "x" * 17000)
    assert response.status == 400
    response = raw.send(method="GET", path="/", headers={"X-Big": "a" * 17000})
    assert response.status == 400
