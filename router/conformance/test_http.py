"""The HTTP front end: requests an SDK never sends (bad JSON, unknown targets, missing or
malformed authentication), compression both ways, response headers and the health check."""

import gzip
import json
import zlib

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


def test_corrupt_gzip_body_is_refused(raw):
    response = raw.call("ListTables", None, raw_body=b"\x1f\x8b not gzip at all",
                        extra_headers={"Content-Encoding": "gzip"})
    assert response.status == 400
    assert response.error_type == "SerializationException"


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
