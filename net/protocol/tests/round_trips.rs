//! Value -> flatbuffers -> Value round trips for every operation's request and response
//! shapes, and the refusals of values the schema cannot carry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value as Json, json};
use shoal_protocol::limits::ATTRIBUTE_NESTING_DEPTH_MAX;
use shoal_protocol::{
    EncodeError, Operation, ServiceError, decode_request, decode_response, encode_request,
    encode_response, split_frame,
};

fn body_of(frame: &[u8]) -> &[u8] {
    split_frame(frame).unwrap().unwrap().0
}

fn request_round_trip(operation: Operation, body: &Json) -> Json {
    let frame = encode_request(9, operation, body).unwrap();
    let request = decode_request(body_of(&frame)).unwrap();
    assert_eq!(request.request_id, 9);
    assert_eq!(
        Operation::from_wire_value(request.operation_value),
        Some(operation)
    );
    request.body().unwrap()
}

fn assert_request_round_trips(operation: Operation, body: Json) {
    assert_eq!(request_round_trip(operation, &body), body, "{operation}");
}

fn assert_response_round_trips(body: Json) {
    let frame = encode_response(5, Ok(&body)).unwrap();
    let response = decode_response(body_of(&frame)).unwrap();
    assert_eq!(response.request_id, 5);
    assert_eq!(response.outcome, Ok(Ok(body)));
}

/// An item with every attribute type, nesting, and the edge cases: empty strings, empty
/// sets, lists and maps (DynamoDB refuses some; the protocol carries them so that the router
/// says so), binary with every byte value, `{}` and `{"NULL": false}`.
fn every_type() -> Json {
    let every_byte: Vec<u8> = (0..=255).collect();
    use base64::Engine;
    let every_byte = base64::engine::general_purpose::STANDARD.encode(every_byte);
    json!({
        "pk": {"S": "partition"},
        "empty string": {"S": ""},
        "unicode ✓": {"S": "naïve — ✓ \u{0}"},
        "number": {"N": "-12345678901234567890123456789012345678"},
        "exponent": {"N": "1.5E-130"},
        "not a number": {"N": "abc"},
        "binary": {"B": every_byte},
        "empty binary": {"B": ""},
        "true": {"BOOL": true},
        "false": {"BOOL": false},
        "null": {"NULL": true},
        "null false": {"NULL": false},
        "empty value": {},
        "strings": {"SS": ["a", "", "b"]},
        "empty strings": {"SS": []},
        "numbers": {"NS": ["1", "2.5", "-3"]},
        "empty numbers": {"NS": []},
        "binaries": {"BS": ["AQ==", "Ag==", ""]},
        "empty binaries": {"BS": []},
        "map": {"M": {
            "inner": {"L": [{"N": "1"}, {"S": ""}, {"M": {}}, {"L": []}, {"NULL": true}]},
            "": {"S": "empty name"},
        }},
        "empty map": {"M": {}},
        "empty list": {"L": []},
    })
}

fn nested(depth: usize) -> Json {
    let mut value = json!({"S": "bottom"});
    for level in 1..depth {
        value = if level % 2 == 0 {
            json!({"L": [value]})
        } else {
            json!({"M": {"m": value}})
        };
    }
    value
}

#[test]
fn item_requests_round_trip() {
    let item = every_type();
    assert_request_round_trips(
        Operation::PutItem,
        json!({
            "TableName": "movies",
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#p) OR #n < :limit",
            "ExpressionAttributeNames": {"#p": "pk", "#n": "number"},
            "ExpressionAttributeValues": {":limit": {"N": "10"}, ":deep": nested(ATTRIBUTE_NESTING_DEPTH_MAX)},
            "ReturnValues": "ALL_OLD",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "ReturnConsumedCapacity": "INDEXES",
            "ReturnItemCollectionMetrics": "SIZE",
            "Expected": {"pk": {"Exists": false}, "n": {"Value": {"N": "1"}, "Exists": true},
                "m": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}, {"N": "2"}]}},
            "ConditionalOperator": "OR",
        }),
    );
    assert_request_round_trips(
        Operation::GetItem,
        json!({
            "TableName": "movies",
            "Key": {"pk": {"S": "p"}, "sk": {"B": "AAEC"}},
            "ConsistentRead": false,
            "ProjectionExpression": "#a, b.c[1]",
            "ExpressionAttributeNames": {"#a": "a"},
            "AttributesToGet": ["a", "b"],
            "ReturnConsumedCapacity": "TOTAL",
        }),
    );
    assert_request_round_trips(
        Operation::UpdateItem,
        json!({
            "TableName": "movies",
            "Key": {"pk": {"S": "p"}},
            "UpdateExpression": "SET #a = :v ADD n :one REMOVE gone",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeNames": {"#a": "a"},
            "ExpressionAttributeValues": {":v": every_type()["map"].clone(), ":one": {"N": "1"}},
            "ReturnValues": "UPDATED_NEW",
            "AttributeUpdates": {"a": {"Value": {"S": "x"}, "Action": "PUT"}, "b": {"Action": "DELETE"}},
        }),
    );
    assert_request_round_trips(
        Operation::DeleteItem,
        json!({"TableName": "movies", "Key": {"pk": {"S": ""}}, "ReturnValues": "NONE"}),
    );
}

#[test]
fn query_and_scan_requests_round_trip() {
    assert_request_round_trips(
        Operation::Query,
        json!({
            "TableName": "movies",
            "IndexName": "by-title",
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "FilterExpression": "size(tags) > :zero",
            "ProjectionExpression": "pk, sk",
            "ExpressionAttributeValues": {":p": {"S": "p"}, ":s": {"S": "a"}, ":zero": {"N": "0"}},
            "ConsistentRead": true,
            "ScanIndexForward": false,
            "Limit": 0,
            "Select": "SPECIFIC_ATTRIBUTES",
            "ExclusiveStartKey": {"pk": {"S": "p"}, "sk": {"S": "b"}},
            "KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}},
            "QueryFilter": {"n": {"ComparisonOperator": "NOT_NULL"}},
            "ConditionalOperator": "AND",
            "ReturnConsumedCapacity": "NONE",
        }),
    );
    assert_request_round_trips(
        Operation::Scan,
        json!({
            "TableName": "movies",
            "Segment": -1,
            "TotalSegments": 4,
            "Limit": i64::MAX,
            "Select": "COUNT",
            "ScanFilter": {"n": {"ComparisonOperator": "IN", "AttributeValueList": [{"N": "1"}, {"S": "x"}]}},
            "ExclusiveStartKey": {},
        }),
    );
}

#[test]
fn batch_requests_round_trip() {
    assert_request_round_trips(
        Operation::BatchGetItem,
        json!({
            "RequestItems": {
                "movies": {
                    "Keys": [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}, {}],
                    "ProjectionExpression": "#p",
                    "ExpressionAttributeNames": {"#p": "pk"},
                    "ConsistentRead": true,
                },
                "books": {"Keys": [], "AttributesToGet": ["pk"]},
                "empty": {},
            },
            "ReturnConsumedCapacity": "TOTAL",
        }),
    );
    assert_request_round_trips(
        Operation::BatchWriteItem,
        json!({
            "RequestItems": {
                "movies": [
                    {"PutRequest": {"Item": every_type()}},
                    {"DeleteRequest": {"Key": {"pk": {"S": "b"}}}},
                    {"PutRequest": {"Item": {}}, "DeleteRequest": {"Key": {}}},
                    {"PutRequest": {}},
                    {},
                ],
                "books": [],
            },
            "ReturnConsumedCapacity": "INDEXES",
            "ReturnItemCollectionMetrics": "NONE",
        }),
    );
    // An empty RequestItems of either form.
    assert_request_round_trips(Operation::BatchGetItem, json!({"RequestItems": {}}));
    assert_request_round_trips(Operation::BatchWriteItem, json!({"RequestItems": {}}));
}

#[test]
fn control_plane_requests_round_trip() {
    assert_request_round_trips(
        Operation::CreateTable,
        json!({
            "TableName": "movies",
            "AttributeDefinitions": [
                {"AttributeName": "year", "AttributeType": "N"},
                {"AttributeName": "title", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "year", "KeyType": "HASH"},
                {"AttributeName": "title", "KeyType": "RANGE"},
            ],
            "BillingMode": "PROVISIONED",
            "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": -1},
            "Tags": [{"Key": "team", "Value": "shoal"}, {"Key": "empty", "Value": ""}],
            "DeletionProtectionEnabled": false,
            "TableClass": "STANDARD",
        }),
    );
    assert_request_round_trips(
        Operation::CreateTable,
        json!({"TableName": "t", "ProvisionedThroughput": {"ReadCapacityUnits": 1}, "Tags": []}),
    );
    assert_request_round_trips(Operation::DescribeTable, json!({"TableName": "movies"}));
    assert_request_round_trips(Operation::DeleteTable, json!({"TableName": "movies"}));
    assert_request_round_trips(
        Operation::ListTables,
        json!({"ExclusiveStartTableName": "m", "Limit": 100}),
    );
    assert_request_round_trips(Operation::ListTables, json!({}));
}

#[test]
fn null_members_are_sent_as_absent() {
    let decoded = request_round_trip(
        Operation::GetItem,
        &json!({"TableName": "t", "Key": {"k": {"S": "v"}}, "ConsistentRead": null, "ProjectionExpression": null}),
    );
    assert_eq!(decoded, json!({"TableName": "t", "Key": {"k": {"S": "v"}}}));
}

#[test]
fn item_responses_round_trip() {
    assert_response_round_trips(json!({}));
    assert_response_round_trips(json!({
        "Item": every_type(),
        "ConsumedCapacity": {"TableName": "movies", "CapacityUnits": 0.5},
    }));
    assert_response_round_trips(json!({
        "Attributes": {"n": {"N": "9"}},
        "ConsumedCapacity": {"TableName": "movies", "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}},
    }));
    assert_response_round_trips(json!({
        "Items": [every_type(), {}, {"pk": {"S": "x"}}],
        "Count": 3,
        "ScannedCount": 10,
        "LastEvaluatedKey": {"pk": {"S": "x"}},
        "ConsumedCapacity": {"TableName": "movies", "CapacityUnits": 2.5},
    }));
    assert_response_round_trips(json!({"Count": 0, "ScannedCount": 0}));
}

#[test]
fn batch_responses_round_trip() {
    assert_response_round_trips(json!({
        "Responses": {"movies": [every_type()], "books": []},
        "UnprocessedKeys": {"movies": {"Keys": [{"pk": {"S": "a"}}], "ProjectionExpression": "pk", "ConsistentRead": false}},
        "ConsumedCapacity": [
            {"TableName": "movies", "CapacityUnits": 1.5},
            {"TableName": "books", "CapacityUnits": 0.0, "Table": {"CapacityUnits": 0.0}},
        ],
    }));
    assert_response_round_trips(json!({"Responses": {}, "UnprocessedKeys": {}}));
    assert_response_round_trips(json!({
        "UnprocessedItems": {"movies": [
            {"PutRequest": {"Item": {"pk": {"S": "a"}}}},
            {"DeleteRequest": {"Key": {"pk": {"S": "b"}}}},
        ]},
        "ConsumedCapacity": [],
    }));
    assert_response_round_trips(json!({"UnprocessedItems": {}}));
}

/// Every member the router's `table_description` produces (router/server/src/router/control.rs).
fn table_description(fractional_dates: bool) -> Json {
    let (increase, decrease, on_demand) = if fractional_dates {
        (
            json!(1_700_000_000.25),
            json!(1_700_000_001.5),
            json!(1_700_000_002.125),
        )
    } else {
        (
            json!(1_700_000_000u64),
            json!(1_700_000_001u64),
            json!(1_700_000_002u64),
        )
    };
    json!({
        "TableName": "movies",
        "TableStatus": "ACTIVE",
        "AttributeDefinitions": [
            {"AttributeName": "title", "AttributeType": "S"},
            {"AttributeName": "year", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "year", "KeyType": "HASH"},
            {"AttributeName": "title", "KeyType": "RANGE"},
        ],
        "CreationDateTime": 1_699_999_999u64,
        "ProvisionedThroughput": {
            "NumberOfDecreasesToday": 1,
            "ReadCapacityUnits": 5,
            "WriteCapacityUnits": 0,
            "LastIncreaseDateTime": increase,
            "LastDecreaseDateTime": decrease,
        },
        "TableSizeBytes": 0,
        "ItemCount": u64::MAX,
        "TableArn": "arn:aws:dynamodb:local:000000000000:table/movies",
        "TableId": "00000000-0000-4000-8000-000000000001",
        "DeletionProtectionEnabled": false,
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST", "LastUpdateToPayPerRequestDateTime": on_demand},
    })
}

#[test]
fn control_plane_responses_round_trip() {
    for fractional in [false, true] {
        assert_response_round_trips(json!({"TableDescription": table_description(fractional)}));
        assert_response_round_trips(json!({"Table": table_description(fractional)}));
    }
    assert_response_round_trips(json!({
        "TableDescription": {"TableName": "t", "TableStatus": "DELETING",
            "ProvisionedThroughput": {"NumberOfDecreasesToday": 0, "ReadCapacityUnits": 0, "WriteCapacityUnits": 0}},
    }));
    assert_response_round_trips(json!({"TableNames": ["a", "b"], "LastEvaluatedTableName": "b"}));
    assert_response_round_trips(json!({"TableNames": []}));
}

#[test]
fn errors_round_trip_with_their_old_item() {
    for item in [None, Some(json!({})), Some(every_type())] {
        let error = ServiceError {
            type_name: "ConditionalCheckFailedException".to_string(),
            message: "The conditional request failed".to_string(),
            item,
        };
        let frame = encode_response(8, Err(&error)).unwrap();
        let response = decode_response(body_of(&frame)).unwrap();
        assert_eq!(response.request_id, 8);
        assert_eq!(response.outcome, Ok(Err(error)));
    }
}

fn refusal(operation: Operation, body: Json) -> (String, String) {
    match encode_request(1, operation, &body) {
        Err(EncodeError::Unrepresentable { path, reason }) => (path, reason),
        other => panic!("{body} was not refused: {other:?}"),
    }
}

#[test]
fn values_the_schema_cannot_carry_are_refused_naming_the_member() {
    let cases = [
        (
            json!({"TableName": "t", "Item": 5}),
            "Item",
            "must be an object",
        ),
        (json!({"TableName": 5}), "TableName", "must be a string"),
        (
            json!({"Item": {"a": {"S": 1}}}),
            "Item.a.S",
            "must be a string",
        ),
        (
            json!({"Item": {"a": "text"}}),
            "Item.a",
            "an AttributeValue must be an object",
        ),
        (
            json!({"Item": {"a": {"S": "x", "N": "1"}}}),
            "Item.a",
            "an AttributeValue has exactly one type, this one has 2",
        ),
        (
            json!({"Item": {"a": {"X": "1"}}}),
            "Item.a",
            "unknown AttributeValue type \"X\"",
        ),
        (
            json!({"Item": {"a": {"B": "!!"}}}),
            "Item.a.B",
            "is not base64",
        ),
        (
            json!({"Item": {"a": {"BS": ["AQ==", 7]}}}),
            "Item.a.BS[1]",
            "must be a base64 string",
        ),
        (
            json!({"Item": {"a": {"NULL": "yes"}}}),
            "Item.a.NULL",
            "must be a boolean",
        ),
        (
            json!({"Item": {"a": {"L": {}}}}),
            "Item.a.L",
            "must be an array",
        ),
        (
            json!({"Item": {"a": {"M": {"b": {"SS": [1]}}}}}),
            "Item.a.M.b.SS[0]",
            "must be a string",
        ),
        (json!({"Limit": 1.5}), "Limit", "must be an integer"),
        (
            json!({"ConsistentRead": "yes"}),
            "ConsistentRead",
            "must be a boolean",
        ),
        (
            json!({"GlobalSecondaryIndexes": []}),
            "GlobalSecondaryIndexes",
            "is not a member",
        ),
        (
            json!({"Expected": {"a": {"Bogus": 1}}}),
            "Expected.a.Bogus",
            "is not a member",
        ),
        (
            json!({"ProvisionedThroughput": {"ReadCapacityUnits": "5"}}),
            "ProvisionedThroughput.ReadCapacityUnits",
            "must be an integer",
        ),
        (
            json!([1, 2]),
            "(the body)",
            "the request body must be a JSON object",
        ),
        (
            json!({"ExpressionAttributeValues": {":v": nested(ATTRIBUTE_NESTING_DEPTH_MAX + 1)}}),
            "ExpressionAttributeValues.:v",
            "nest deeper than 64 levels",
        ),
    ];
    for (body, expected_path, expected_reason) in cases {
        let (path, reason) = refusal(Operation::PutItem, body.clone());
        assert!(
            path.starts_with(expected_path) && reason.contains(expected_reason),
            "{body}: {path} {reason}"
        );
    }
    // RequestItems takes the form of the operation.
    let (path, _) = refusal(
        Operation::BatchWriteItem,
        json!({"RequestItems": {"t": {"Keys": []}}}),
    );
    assert_eq!(path, "RequestItems.t");
    let (path, _) = refusal(
        Operation::BatchGetItem,
        json!({"RequestItems": {"t": [{"PutRequest": {}}]}}),
    );
    assert_eq!(path, "RequestItems.t");
    // The message a caller sees.
    let error = encode_request(1, Operation::PutItem, &json!({"Item": 5})).unwrap_err();
    assert_eq!(error.to_string(), "member Item must be an object");
}

#[test]
fn a_response_member_the_schema_does_not_carry_is_refused() {
    let error = encode_response(1, Ok(&json!({"ItemCollectionMetrics": {}}))).unwrap_err();
    assert!(
        matches!(&error, EncodeError::Unrepresentable { path, .. } if path == "ItemCollectionMetrics"),
        "{error}"
    );
}
