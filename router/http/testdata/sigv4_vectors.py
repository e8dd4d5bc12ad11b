import datetime, hashlib, json
from unittest import mock
import botocore.auth, botocore.awsrequest, botocore.credentials

def at(ts):
    return mock.patch("botocore.auth.get_current_datetime", return_value=ts)

creds = botocore.credentials.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
ts = datetime.datetime(2026, 11, 21, 12, 34, 56)
# 1. A DynamoDB PutItem as boto3 sends it.
body = b'{"TableName": "movies", "Item": {"year": {"N": "2001"}, "title": {"S": "Am\xc3\xa9lie"}}}'
r = botocore.awsrequest.AWSRequest(method="POST", url="http://127.0.0.1:8000/", data=body, headers={
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.PutItem",
    "User-Agent": "Boto3/1.35.0 md/Botocore#1.35.0",
})
with at(ts):
    botocore.auth.SigV4Auth(creds, "dynamodb", "us-east-1").add_auth(r)
print("HEADER", dict(r.headers))
# 2. A path and a query string that need encoding.
r = botocore.awsrequest.AWSRequest(method="POST", url="http://localhost:8000/a%20b/./c//d/?b=2&a=x%2Fy&a=1&empty=", data=b"{}", headers={
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "X-Custom": "  spaced   out  value ",
})
with at(ts):
    botocore.auth.SigV4Auth(creds, "dynamodb", "eu-west-1").add_auth(r)
print("ENCODED", r.url, dict(r.headers))
# 3. Presigned, with the body's hash in X-Amz-Content-SHA256.
body = b'{"TableName": "movies"}'
r = botocore.awsrequest.AWSRequest(method="POST", url="http://127.0.0.1:8000/", headers={
    "X-Amz-Target": "DynamoDB_20120810.DescribeTable",
    "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(),
})
with at(ts):
    botocore.auth.SigV4QueryAuth(creds, "dynamodb", "us-east-1", expires=300).add_auth(r)
print("PRESIGNED", r.url, dict(r.headers))
