use serde_json::json;

use crate::validate::create_table;

fn table() -> serde_json::Value {
    json!({
        "TableName": "orders",
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "date", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "LocalSecondaryIndexes": [{
            "IndexName": "by_date",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "date", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total"]},
        }],
    })
}

fn message(body: &serde_json::Value) -> String {
    create_table(body).unwrap_err().message
}

#[test]
fn local_indexes_are_accepted_and_numbered() {
    let table = create_table(&table()).unwrap();
    assert_eq!(table.local_indexes.len(), 1);
    assert_eq!(table.local_indexes[0].name, "by_date");
    assert_eq!(table.local_indexes[0].number, 0);
    assert_eq!(table.local_indexes[0].sort_key.name, "date");
}

#[test]
fn local_index_rules_use_dynamodb_messages() {
    let mut body = table();
    body["LocalSecondaryIndexes"] = json!([]);
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: List of LocalSecondaryIndexes is empty"
    );
    let mut body = table();
    body["LocalSecondaryIndexes"][0]["KeySchema"][0]["AttributeName"] = json!("date");
    body["LocalSecondaryIndexes"][0]["KeySchema"][1]["AttributeName"] = json!("sk");
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Index KeySchema does not have the same leading hash key as table KeySchema for index: by_date. index hash key: date, table hash key: pk"
    );
    let mut body = table();
    body["LocalSecondaryIndexes"][0]["KeySchema"] =
        json!([{"AttributeName": "pk", "KeyType": "HASH"}]);
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Index KeySchema does not have a range key for index: by_date"
    );
    let mut body = table();
    body["KeySchema"] = json!([{"AttributeName": "pk", "KeyType": "HASH"}]);
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex"
    );
    let mut body = table();
    let index = body["LocalSecondaryIndexes"][0].clone();
    body["LocalSecondaryIndexes"] = json!([index.clone(), index]);
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Duplicate index name: by_date"
    );
    let mut body = table();
    body["LocalSecondaryIndexes"][0]["Projection"] =
        json!({"ProjectionType": "ALL", "NonKeyAttributes": ["x"]});
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: ProjectionType is ALL, but NonKeyAttributes is specified"
    );
    let mut body = table();
    body["LocalSecondaryIndexes"][0]["Projection"] = json!({});
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Unknown ProjectionType: null"
    );
    let mut body = table();
    body["LocalSecondaryIndexes"][0]["KeySchema"][1]["AttributeName"] = json!("nope");
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [pk, nope], AttributeDefinitions: [pk, sk, date]"
    );
    let mut body = table();
    body["AttributeDefinitions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"AttributeName": "extra", "AttributeType": "S"}));
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Some AttributeDefinitions are not used. AttributeDefinitions: [pk, sk, date, extra], keys used: [pk, sk, date]"
    );
    let mut body = table();
    body["LocalSecondaryIndexes"][0]["IndexName"] = json!("x!");
    assert_eq!(
        message(&body),
        "2 validation errors detected: Value 'x!' at 'localSecondaryIndexes.1.member.indexName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value 'x!' at 'localSecondaryIndexes.1.member.indexName' failed to satisfy constraint: Member must have length greater than or equal to 3"
    );
}

#[test]
fn index_limits_are_named_and_enforced() {
    let mut body = table();
    let index = body["LocalSecondaryIndexes"][0].clone();
    let six: Vec<_> = (0..6)
        .map(|position| {
            let mut index = index.clone();
            index["IndexName"] = json!(format!("index{position}"));
            index
        })
        .collect();
    body["LocalSecondaryIndexes"] = json!(six);
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Number of LocalSecondaryIndexes exceeds per-table limit of 5"
    );
    let mut body = table();
    let names: Vec<String> = (0..101).map(|n| format!("a{n}")).collect();
    body["LocalSecondaryIndexes"][0]["Projection"]["NonKeyAttributes"] = json!(names);
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Number of projected attributes in all indexes exceeds limit of 100"
    );
}

#[test]
fn global_indexes_are_checked() {
    let mut body = table();
    body["GlobalSecondaryIndexes"] = json!([{
        "IndexName": "by_sk",
        "KeySchema": [{"AttributeName": "sk", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
    }]);
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: ProvisionedThroughput should not be specified for index: by_sk when BillingMode is PAY_PER_REQUEST"
    );
    body["GlobalSecondaryIndexes"][0]
        .as_object_mut()
        .unwrap()
        .remove("ProvisionedThroughput");
    let accepted = crate::validate::create_table(&body).expect("a valid GSI is accepted");
    assert_eq!(accepted.global_indexes.len(), 1);
    assert_eq!(accepted.global_indexes[0].name, "by_sk");
    body["GlobalSecondaryIndexes"][0]["IndexName"] = json!("by_date");
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: Duplicate index name: by_date"
    );
    let mut body = table();
    body["BillingMode"] = json!("PROVISIONED");
    body["ProvisionedThroughput"] = json!({"ReadCapacityUnits": 1, "WriteCapacityUnits": 1});
    body["GlobalSecondaryIndexes"] = json!([{
        "IndexName": "by_sk",
        "KeySchema": [{"AttributeName": "sk", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "ALL"},
    }]);
    assert_eq!(
        message(&body),
        "One or more parameter values were invalid: ProvisionedThroughput is not specified for index: by_sk"
    );
}

fn multi_attribute_table(key_schema: serde_json::Value) -> serde_json::Value {
    json!({
        "TableName": "matches",
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "t", "AttributeType": "S"},
            {"AttributeName": "r", "AttributeType": "S"},
            {"AttributeName": "round", "AttributeType": "S"},
            {"AttributeName": "bracket", "AttributeType": "N"},
            {"AttributeName": "a", "AttributeType": "S"},
            {"AttributeName": "b", "AttributeType": "S"},
            {"AttributeName": "c", "AttributeType": "B"},
        ],
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [{
            "IndexName": "by_match",
            "KeySchema": key_schema,
            "Projection": {"ProjectionType": "ALL"},
        }],
    })
}

fn element(name: &str, key_type: &str) -> serde_json::Value {
    json!({"AttributeName": name, "KeyType": key_type})
}

/// Multi-attribute GSI keys (developer guide, "Multi-attribute keys pattern"; botocore's
/// CreateGlobalSecondaryIndexAction: "up to 4 partition and up to 4 sort keys").
#[test]
fn a_global_index_key_has_up_to_four_hash_then_up_to_four_range_attributes() {
    let body = multi_attribute_table(json!([
        element("t", "HASH"),
        element("r", "HASH"),
        element("round", "RANGE"),
        element("bracket", "RANGE"),
        element("a", "RANGE"),
        element("b", "RANGE"),
    ]));
    // Every definition is used by some key, so "c" must be too.
    let mut used_all = body.clone();
    used_all["GlobalSecondaryIndexes"][0]["KeySchema"]
        .as_array_mut()
        .unwrap()
        .insert(2, element("c", "HASH"));
    let table = create_table(&used_all).unwrap();
    let index = &table.global_indexes[0];
    let names = |keys: &[shoal_model::key::KeyAttribute]| -> Vec<String> {
        keys.iter().map(|key| key.name.clone()).collect()
    };
    assert_eq!(names(&index.partition_keys), ["t", "r", "c"]);
    assert_eq!(names(&index.sort_keys), ["round", "bracket", "a", "b"]);

    let mut five_range = used_all.clone();
    five_range["GlobalSecondaryIndexes"][0]["KeySchema"]
        .as_array_mut()
        .unwrap()
        .push(element("id", "RANGE"));
    assert_eq!(
        message(&five_range),
        "Invalid KeySchema: A global secondary index key has at most 4 RANGE KeySchemaElements, found 5"
    );
    let five_hash = multi_attribute_table(json!([
        element("t", "HASH"),
        element("r", "HASH"),
        element("round", "HASH"),
        element("bracket", "HASH"),
        element("a", "HASH"),
        element("b", "RANGE"),
        element("c", "RANGE"),
    ]));
    assert_eq!(
        message(&five_hash),
        "Invalid KeySchema: A global secondary index key has at most 4 HASH KeySchemaElements, found 5"
    );
    let interleaved = multi_attribute_table(json!([
        element("t", "HASH"),
        element("round", "RANGE"),
        element("r", "HASH"),
    ]));
    assert_eq!(
        message(&interleaved),
        "Invalid KeySchema: Every HASH KeySchemaElement must come before the RANGE KeySchemaElements"
    );
    let repeated = multi_attribute_table(json!([
        element("t", "HASH"),
        element("r", "HASH"),
        element("t", "RANGE"),
    ]));
    assert_eq!(
        message(&repeated),
        "Invalid KeySchema: The attribute t appears more than once in the KeySchema"
    );
    let range_first = multi_attribute_table(json!([element("t", "RANGE"), element("r", "HASH")]));
    assert_eq!(
        message(&range_first),
        "Invalid KeySchema: The first KeySchemaElement is not a HASH key type"
    );
}

/// A local index keeps its one sort key: two HASH elements are refused as before.
#[test]
fn a_local_index_key_has_no_second_hash_attribute() {
    let mut body = table();
    body["LocalSecondaryIndexes"][0]["KeySchema"][1]["KeyType"] = json!("HASH");
    assert_eq!(
        message(&body),
        "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type"
    );
}

#[test]
fn a_repeated_hash_attribute_of_a_global_index_is_named() {
    let body = multi_attribute_table(json!([element("t", "HASH"), element("t", "HASH")]));
    assert_eq!(
        message(&body),
        "Invalid KeySchema: The attribute t appears more than once in the KeySchema"
    );
    let body = multi_attribute_table(json!([element("t", "HASH"), element("t", "RANGE")]));
    assert_eq!(
        message(&body),
        "Both the Hash Key and the Range Key element in the KeySchema have the same name"
    );
}
