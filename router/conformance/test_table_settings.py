"""The table settings CloudFormation, Terraform and CDK send with every table: SSESpecification,
TableClass, DeletionProtectionEnabled and StreamSpecification with StreamEnabled false.

Sources, cited per case:
- API: the DynamoDB API reference (CreateTable, UpdateTable, DeleteTable, DescribeTable:
  SSESpecification, SSEDescription, TableClassSummary, DeletionProtectionEnabled,
  StreamSpecification), as botocore's service-2.json carries it.
- QUIRKS-nnn: the ack-api-quirks DynamoDB catalogue, whose entries record probes of DynamoDB
  itself (us-east-1, us-west-2): DDB-TABLE-442 (the ValidationException texts) and its page on
  streams, encryption, table class and deletion protection (DDB-TABLE-017, 018, 027, 031,
  050, 082, 141, 283, 433).

Shoal keeps no keys in KMS: a table asked to use KMS is described with the key it named (or
the AWS managed key's alias ARN) and protected like every Shoal table by the disks' own
encryption (router/server/src/table_settings.rs).
"""

import botocore.exceptions
import pytest

from conftest import REGION, create_table_request, expect_error, unique_name

INVALID = "One or more parameter values were invalid: "
DELETION_PROTECTED = ("Resource cannot be deleted as it is currently protected against deletion. "
                      "Disable deletion protection first.")
ACCOUNT = "000000000000"


def describe(ddb, name):
    return ddb.describe_table(TableName=name)["Table"]


@pytest.fixture
def create(ddb):
    """CreateTable with extra members; the tables are deleted (protection off first) after."""
    names = []

    def make(**extra):
        name = unique_name("settings")
        answer = ddb.create_table(**create_table_request(name), **extra)["TableDescription"]
        names.append(name)
        return name, answer

    yield make
    for name in names:
        try:
            ddb.update_table(TableName=name, DeletionProtectionEnabled=False)
        except ddb.exceptions.ResourceNotFoundException:
            continue
        except botocore.exceptions.ClientError:
            pass
        try:
            ddb.delete_table(TableName=name)
        except ddb.exceptions.ResourceNotFoundException:
            pass


# --- SSESpecification ----------------------------------------------------------------------

def test_default_encryption_has_no_sse_description(ddb, create):
    # QUIRKS-027/442: SSEDescription is absent for the AWS owned key: the default, {} and
    # Enabled false alike.
    for extra in [{}, {"SSESpecification": {}}, {"SSESpecification": {"Enabled": False}}]:
        name, answer = create(**extra)
        assert "SSEDescription" not in answer
        assert "SSEDescription" not in describe(ddb, name)


def test_kms_encryption_is_described(ddb, create):
    # API SSEDescription: Status ENABLED, SSEType KMS, KMSMasterKeyArn. QUIRKS-027: SSEType KMS
    # alone enables it as Enabled true does.
    managed = f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws/dynamodb"
    for specification, arn in [
        ({"Enabled": True}, managed),
        ({"SSEType": "KMS"}, managed),
        ({"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": "alias/orders"},
         f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/orders"),
        ({"Enabled": True, "SSEType": "KMS",
          "KMSMasterKeyId": "arn:aws:kms:us-east-1:111122223333:key/1234abcd"},
         "arn:aws:kms:us-east-1:111122223333:key/1234abcd"),
    ]:
        name, answer = create(SSESpecification=specification)
        expected = {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": arn}
        assert answer["SSEDescription"] == expected
        assert describe(ddb, name)["SSEDescription"] == expected


@pytest.mark.parametrize("specification, message", [
    # QUIRKS-442 (SSE texts, CreateTable and UpdateTable).
    ({"Enabled": False, "SSEType": "KMS"}, INVALID + "SSEType can not be specified if Enabled is false"),
    ({"Enabled": False, "KMSMasterKeyId": "alias/x"},
     INVALID + "KMSMasterKeyId can not be specified if Enabled is false"),
    ({"Enabled": True, "SSEType": "AES256"}, INVALID + "SSEType AES256 is not supported"),
    ({"Enabled": True, "KMSMasterKeyId": "alias/x"},
     INVALID + "SSEType KMS is required if KMSMasterKeyId is specified"),
])
def test_bad_sse_specifications_are_refused(ddb, specification, message):
    name = unique_name("settings")
    expect_error(lambda: ddb.create_table(**create_table_request(name),
                                          SSESpecification=specification),
                 "ValidationException", message)
    expect_error(lambda: ddb.describe_table(TableName=name), "ResourceNotFoundException")


def test_sse_type_outside_the_enum(raw):
    # API: SSEType is one of AES256, KMS (the generic constraint text).
    request = create_table_request(unique_name("settings"))
    request["SSESpecification"] = {"Enabled": True, "SSEType": "DES"}
    response = raw.call("CreateTable", request)
    assert response.status == 400 and response.error_type == "ValidationException"
    assert response.json()["message"] == (
        "1 validation error detected: Value 'DES' at 'sSESpecification.sSEType' failed to "
        "satisfy constraint: Member must satisfy enum value set: [AES256, KMS]")


def test_update_table_changes_encryption(ddb, create):
    name, _ = create()
    # QUIRKS-018/442: Enabled false on a default-encrypted table is refused.
    expect_error(lambda: ddb.update_table(TableName=name, SSESpecification={"Enabled": False}),
                 "ValidationException", INVALID + "Table is already encrypted by default")
    key = "arn:aws:kms:us-east-1:111122223333:key/abcd"
    answer = ddb.update_table(TableName=name, SSESpecification={
        "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key})["TableDescription"]
    assert answer["SSEDescription"]["KMSMasterKeyArn"] == key
    assert describe(ddb, name)["SSEDescription"]["KMSMasterKeyArn"] == key
    # QUIRKS-082/141: only the exact key ARN re-sent is refused.
    expect_error(lambda: ddb.update_table(TableName=name, SSESpecification={
        "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key}), "ValidationException",
        INVALID + "Table is already encrypted with given KMSMasterKeyId. Use KMSMasterKeyId "
        "parameter if you want to change Master Key")
    # Back to the AWS owned key: the description disappears (QUIRKS-027: absent, never DISABLED).
    ddb.update_table(TableName=name, SSESpecification={"Enabled": False})
    assert "SSEDescription" not in describe(ddb, name)


def test_encryption_must_be_the_only_change(ddb, create):
    # QUIRKS-442/433: the message names encryption before the class and protection.
    name, _ = create()
    expect_error(lambda: ddb.update_table(TableName=name, SSESpecification={"Enabled": True},
                                          DeletionProtectionEnabled=True),
                 "ValidationException",
                 INVALID + "Server-Side Encryption modification must be the only operation in "
                 "the request")
    expect_error(lambda: ddb.update_table(TableName=name, TableClass="STANDARD",
                                          DeletionProtectionEnabled=True),
                 "ValidationException",
                 INVALID + "TableClass modification must be the only operation in the request")
    table = describe(ddb, name)
    assert table["DeletionProtectionEnabled"] is False and "SSEDescription" not in table


# --- TableClass ----------------------------------------------------------------------------

def test_table_class_given_at_creation_is_reported(ddb, create):
    # API TableClassSummary; QUIRKS-283: a table never given a class has no summary (STANDARD).
    plain, answer = create()
    assert "TableClassSummary" not in answer
    name, answer = create(TableClass="STANDARD_INFREQUENT_ACCESS")
    assert answer["TableClassSummary"] == {"TableClass": "STANDARD_INFREQUENT_ACCESS"}
    assert describe(ddb, name)["TableClassSummary"] == {"TableClass": "STANDARD_INFREQUENT_ACCESS"}
    # QUIRKS-283: TableClass STANDARD on a table never given one changes nothing.
    ddb.update_table(TableName=plain, TableClass="STANDARD")
    assert "TableClassSummary" not in describe(ddb, plain)


def test_update_table_changes_the_table_class(ddb, create):
    # API UpdateTable TableClass; TableClassSummary.LastUpdateDateTime dates the change.
    name, _ = create()
    ddb.update_table(TableName=name, TableClass="STANDARD_INFREQUENT_ACCESS")
    summary = describe(ddb, name)["TableClassSummary"]
    assert summary["TableClass"] == "STANDARD_INFREQUENT_ACCESS"
    assert "LastUpdateDateTime" in summary
    ddb.update_table(TableName=name, TableClass="STANDARD")
    assert describe(ddb, name)["TableClassSummary"]["TableClass"] == "STANDARD"
    # The table still serves items as before.
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}})
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "a"}}, ConsistentRead=True)["Item"]


# --- DeletionProtectionEnabled -------------------------------------------------------------

def test_deletion_protection_refuses_delete_table_until_turned_off(ddb, create):
    # QUIRKS-017/442: DeleteTable of a protected table is a ValidationException with this text;
    # UpdateTable turns it off and the next DeleteTable succeeds.
    name, answer = create(DeletionProtectionEnabled=True)
    assert answer["DeletionProtectionEnabled"] is True
    ddb.put_item(TableName=name, Item={"pk": {"S": "kept"}})
    expect_error(lambda: ddb.delete_table(TableName=name), "ValidationException",
                 DELETION_PROTECTED)
    table = describe(ddb, name)
    assert table["TableStatus"] == "ACTIVE" and table["DeletionProtectionEnabled"] is True
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "kept"}}, ConsistentRead=True)["Item"]
    # QUIRKS-017: a same-value re-send succeeds.
    ddb.update_table(TableName=name, DeletionProtectionEnabled=True)
    answer = ddb.update_table(TableName=name, DeletionProtectionEnabled=False)
    assert answer["TableDescription"]["DeletionProtectionEnabled"] is False
    ddb.delete_table(TableName=name)
    expect_error(lambda: ddb.describe_table(TableName=name), "ResourceNotFoundException")


def test_deletion_protection_turned_on_later(ddb, create):
    # API UpdateTable DeletionProtectionEnabled; DescribeTable always reports it (QUIRKS-017).
    name, answer = create()
    assert answer["DeletionProtectionEnabled"] is False
    ddb.update_table(TableName=name, DeletionProtectionEnabled=True)
    assert describe(ddb, name)["DeletionProtectionEnabled"] is True
    expect_error(lambda: ddb.delete_table(TableName=name), "ValidationException",
                 DELETION_PROTECTED)


# --- StreamSpecification -------------------------------------------------------------------

def test_a_disabled_stream_is_accepted_and_not_described(ddb, create):
    # QUIRKS-050: StreamEnabled false is taken; the description has no StreamSpecification
    # (the same as a table that never had a stream).
    name, answer = create(StreamSpecification={"StreamEnabled": False})
    assert "StreamSpecification" not in answer
    assert "StreamSpecification" not in describe(ddb, name)
    # QUIRKS-050/442: disabling a stream a table does not have is refused with the table name.
    expect_error(lambda: ddb.update_table(TableName=name,
                                          StreamSpecification={"StreamEnabled": False}),
                 "ValidationException", f"Table has no stream to disable: TableName: {name}")


@pytest.mark.parametrize("specification, message", [
    # QUIRKS-442: CreateTable's stream texts.
    ({"StreamEnabled": False, "StreamViewType": "KEYS_ONLY"},
     INVALID + "Table is being created with a stream disabled, UpdateViewType should not be "
     "specified"),
    ({"StreamEnabled": True},
     INVALID + "Table is being created with a stream enabled, UpdateViewType is required"),
])
def test_bad_stream_specifications_are_refused(ddb, specification, message):
    name = unique_name("settings")
    expect_error(lambda: ddb.create_table(**create_table_request(name),
                                          StreamSpecification=specification),
                 "ValidationException", message)


def test_update_table_stream_rules(ddb, create):
    name, _ = create()
    # QUIRKS-442: UpdateTable's stream texts; QUIRKS-433: not with a throughput change.
    expect_error(lambda: ddb.update_table(TableName=name, StreamSpecification={
        "StreamEnabled": False, "StreamViewType": "NEW_IMAGE"}), "ValidationException",
        INVALID + "If stream is being disabled, then UpdateViewType must not be specified")
    expect_error(lambda: ddb.update_table(TableName=name, StreamSpecification={
        "StreamEnabled": True}), "ValidationException",
        INVALID + "If stream is being enabled then UpdateViewType is required")
    expect_error(lambda: ddb.update_table(
        TableName=name, StreamSpecification={"StreamEnabled": False}, BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}),
        "ValidationException",
        INVALID + "You cannot modify stream status while updating table IOPS")


def test_the_settings_a_cloudformation_table_sends_together(ddb, create):
    # What AWS::DynamoDB::Table with SSESpecification, TableClass, DeletionProtectionEnabled
    # and a disabled stream sends in one CreateTable (API CreateTable members).
    name, answer = create(
        SSESpecification={"Enabled": True, "SSEType": "KMS"},
        TableClass="STANDARD",
        DeletionProtectionEnabled=True,
        StreamSpecification={"StreamEnabled": False},
        Tags=[{"Key": "aws-cdk", "Value": "stack"}],
    )
    table = describe(ddb, name)
    for description in (answer, table):
        assert description["SSEDescription"]["Status"] == "ENABLED"
        assert description["TableClassSummary"] == {"TableClass": "STANDARD"}
        assert description["DeletionProtectionEnabled"] is True
        assert "StreamSpecification" not in description
