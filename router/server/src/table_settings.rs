//! The table settings that infrastructure tools (CloudFormation, Terraform, CDK) send with every
//! table: encryption at rest (`SSESpecification`), the table class, deletion protection and
//! the stream (`StreamSpecification`; the stream itself is router/streams.rs's). Their request
//! checks, how each is kept in the table item, and what DescribeTable reports, as DynamoDB
//! does.
//!
//! Sources for the rules and texts (conformance tests cite them beside each case):
//! - botocore's service-2.json: the members, their enums (`SSEType` AES256/KMS,
//!   `StreamViewType`, `TableClass`), `StreamEnabled` required;
//! - the ack-api-quirks DynamoDB catalogue (probes of DynamoDB): DDB-TABLE-442 (the texts),
//!   and its "streams, encryption, table class, deletion protection" page: SSEDescription is
//!   absent for the AWS owned key (the default, `Enabled: false`, `{}`), `{SSEType: KMS}` alone
//!   enables KMS, a key needs SSEType KMS, UpdateTable's "already encrypted" refusals, an
//!   absent TableClassSummary means STANDARD and TableClass STANDARD on a table never given
//!   a class leaves it absent, DeletionProtectionEnabled is always reported and a same-value
//!   re-send succeeds, each of these changes must be the only one of its UpdateTable (the
//!   message names SSE before TableClass before deletion protection).
//!
//! What Shoal does not have and says so instead of pretending: a table key in KMS. Shoal
//! keeps no keys; a table asked to use KMS is stored and described with the key ARN it was
//! given (or the ARN of DynamoDB's AWS managed key alias, `alias/aws/dynamodb`, when it named
//! none), so that tools reading the description back see what they asked for. Data at rest
//! is protected by the disks' own encryption (kernel-notes/deployment.md), as every Shoal
//! table is.

use serde_json::{Map, Value as Json, json};

use crate::error::DynamoError;
use crate::validate::TableClass;

/// The message prefix DynamoDB puts before a rule about parameter values.
const INVALID: &str = "One or more parameter values were invalid: ";
/// DeleteTable on a table with deletion protection on (DDB-TABLE-442, DDB-TABLE-017).
pub const DELETION_PROTECTED: &str = "Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first.";
/// The alias of DynamoDB's AWS managed key, used when KMS is asked for without a key.
pub const AWS_MANAGED_KEY_ALIAS: &str = "alias/aws/dynamodb";

/// The table item's members (router/server/README.md lists them with the others).
const SSE_KMS_KEY_ARN_ATTRIBUTE: &str = "sse_kms_key_arn";
const TABLE_CLASS_ATTRIBUTE: &str = "table_class";
const TABLE_CLASS_UPDATED_MS_ATTRIBUTE: &str = "table_class_updated_ms";
const DELETION_PROTECTION_ATTRIBUTE: &str = "deletion_protection";

/// How a table is encrypted at rest, as DescribeTable reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// DynamoDB's default (an AWS owned key): no SSEDescription.
    #[default]
    AwsOwnedKey,
    /// `SSEType: KMS` with this key ARN.
    Kms { key_arn: String },
}

/// A table class that was given at creation or set by UpdateTable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableClassSetting {
    pub class: TableClass,
    /// When UpdateTable last changed it (unix milliseconds); `None` if set at creation only.
    pub updated_ms: Option<u64>,
}

/// The settings a table item keeps besides its schema, billing and partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSettings {
    pub encryption: Encryption,
    /// `None`: never given, so STANDARD without a TableClassSummary.
    pub table_class: Option<TableClassSetting>,
    pub deletion_protection: bool,
}

/// What an `SSESpecification` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncryptionRequest {
    AwsOwnedKey,
    /// KMS, with the key as given (an ARN, an alias name, a key id) or DynamoDB's managed key.
    Kms {
        key: Option<String>,
    },
}

/// The settings CreateTable asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateSettings {
    pub encryption: Option<EncryptionRequest>,
    pub table_class: Option<TableClass>,
    pub deletion_protection: Option<bool>,
}

/// The settings UpdateTable asked to change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateSettings {
    pub encryption: Option<EncryptionRequest>,
    pub table_class: Option<TableClass>,
    pub deletion_protection: Option<bool>,
    pub stream: Option<StreamSpecification>,
}

/// A `StreamSpecification` as given (checked for shape only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpecification {
    pub enabled: bool,
    pub view_type: Option<String>,
}

fn structure<'body>(
    body: &'body Json,
    member: &str,
) -> Result<Option<&'body Map<String, Json>>, DynamoError> {
    match body.get(member) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(map)) => Ok(Some(map)),
        Some(_) => Err(DynamoError::serialization(&format!(
            "{member} must be a structure"
        ))),
    }
}

fn optional_string<'body>(
    map: &'body Map<String, Json>,
    member: &str,
) -> Result<Option<&'body str>, DynamoError> {
    match map.get(member) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(text)),
        Some(_) => Err(DynamoError::serialization(&format!(
            "{member} must be a string"
        ))),
    }
}

fn optional_bool(map: &Map<String, Json>, member: &str) -> Result<Option<bool>, DynamoError> {
    match map.get(member) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(DynamoError::serialization(&format!(
            "{member} must be a boolean"
        ))),
    }
}

fn enum_violation(value: &str, path: &str, allowed: &[&str]) -> DynamoError {
    DynamoError::validation(format!(
        "1 validation error detected: Value '{value}' at '{path}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        allowed.join(", ")
    ))
}

/// The SSE types of botocore's model, in its order.
const SSE_TYPES: [&str; 2] = ["AES256", "KMS"];
/// The stream view types, in the order DynamoDB's enum message lists them (ack-api-quirks
/// DDB-TABLE-457, `ct_stream_viewtype_empty`), which is not botocore's.
const STREAM_VIEW_TYPES: [&str; 4] = ["OLD_IMAGE", "KEYS_ONLY", "NEW_AND_OLD_IMAGES", "NEW_IMAGE"];

/// A request's `SSESpecification`, `None` when absent. The rules of DynamoDB, in its order:
/// the enum, then `Enabled: false` with a type or key, AES256, a key without SSEType KMS.
/// `{}` and `Enabled: false` ask for the AWS owned key; `Enabled: true` or `SSEType: KMS`
/// for KMS.
pub fn encryption_request(body: &Json) -> Result<Option<EncryptionRequest>, DynamoError> {
    let Some(specification) = structure(body, "SSESpecification")? else {
        return Ok(None);
    };
    let enabled = optional_bool(specification, "Enabled")?;
    let sse_type = optional_string(specification, "SSEType")?;
    let key = optional_string(specification, "KMSMasterKeyId")?;
    // DDB-TABLE-457 `ct_sse_kms_key_empty`: the generic length constraint.
    if key == Some("") {
        return Err(DynamoError::validation(
            "1 validation error detected: Value '' at 'sSESpecification.kMSMasterKeyId' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if let Some(sse_type) = sse_type
        && !SSE_TYPES.contains(&sse_type)
    {
        return Err(enum_violation(
            sse_type,
            "sSESpecification.sSEType",
            &SSE_TYPES,
        ));
    }
    if enabled == Some(false) {
        if sse_type.is_some() {
            return Err(DynamoError::validation(format!(
                "{INVALID}SSEType can not be specified if Enabled is false"
            )));
        }
        if key.is_some() {
            return Err(DynamoError::validation(format!(
                "{INVALID}KMSMasterKeyId can not be specified if Enabled is false"
            )));
        }
        return Ok(Some(EncryptionRequest::AwsOwnedKey));
    }
    if sse_type == Some("AES256") {
        return Err(DynamoError::validation(format!(
            "{INVALID}SSEType AES256 is not supported"
        )));
    }
    if key.is_some() && sse_type != Some("KMS") {
        return Err(DynamoError::validation(format!(
            "{INVALID}SSEType KMS is required if KMSMasterKeyId is specified"
        )));
    }
    if enabled == Some(true) || sse_type == Some("KMS") {
        return Ok(Some(EncryptionRequest::Kms {
            key: key.map(str::to_string),
        }));
    }
    Ok(Some(EncryptionRequest::AwsOwnedKey))
}

/// A request's `StreamSpecification`, `None` when absent: its shape (StreamEnabled required,
/// the view type enum). The rules between the two members differ between CreateTable and
/// UpdateTable ([`check_create_stream`], [`check_update_stream`]).
pub fn stream_specification(body: &Json) -> Result<Option<StreamSpecification>, DynamoError> {
    let Some(specification) = structure(body, "StreamSpecification")? else {
        return Ok(None);
    };
    let view_type = optional_string(specification, "StreamViewType")?;
    let Some(enabled) = optional_bool(specification, "StreamEnabled")? else {
        return Err(DynamoError::missing_member(
            "streamSpecification.streamEnabled",
        ));
    };
    if let Some(view_type) = view_type
        && !STREAM_VIEW_TYPES.contains(&view_type)
    {
        return Err(enum_violation(
            view_type,
            "streamSpecification.streamViewType",
            &STREAM_VIEW_TYPES,
        ));
    }
    Ok(Some(StreamSpecification {
        enabled,
        view_type: view_type.map(str::to_string),
    }))
}

fn view_type(stream: &StreamSpecification) -> Option<shoal_model::stream::ViewType> {
    stream
        .view_type
        .as_deref()
        .and_then(shoal_model::stream::ViewType::parse)
}

/// CreateTable's stream rules: a disabled stream takes no view type, an enabled one needs it.
/// The view type of the stream to create, if one is asked for.
pub fn check_create_stream(
    stream: &StreamSpecification,
) -> Result<Option<shoal_model::stream::ViewType>, DynamoError> {
    match (stream.enabled, &stream.view_type) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(DynamoError::validation(format!(
            "{INVALID}Table is being created with a stream disabled, UpdateViewType should not be specified"
        ))),
        (true, None) => Err(DynamoError::validation(format!(
            "{INVALID}Table is being created with a stream enabled, UpdateViewType is required"
        ))),
        (true, Some(_)) => Ok(view_type(stream)),
    }
}

/// UpdateTable's stream rules, given the table's name and whether its latest stream is on
/// (ENABLING or ENABLED): the request's shape first, then the table's state (messages from
/// probes of DynamoDB, ack-api-quirks DDB-TABLE-050 and -442, and Alternator's
/// test_streams.py, which runs on DynamoDB). `Some(view)` enables a new stream, `None`
/// disables the one that is on.
pub fn check_update_stream(
    stream: &StreamSpecification,
    table: &str,
    stream_on: bool,
) -> Result<Option<shoal_model::stream::ViewType>, DynamoError> {
    match (stream.enabled, &stream.view_type) {
        (false, Some(_)) => Err(DynamoError::validation(format!(
            "{INVALID}If stream is being disabled, then UpdateViewType must not be specified"
        ))),
        (true, None) => Err(DynamoError::validation(format!(
            "{INVALID}If stream is being enabled then UpdateViewType is required"
        ))),
        (false, None) if !stream_on => Err(DynamoError::validation(format!(
            "Table has no stream to disable: TableName: {table}"
        ))),
        (false, None) => Ok(None),
        // The same view type or another: a stream's view type never changes in place.
        (true, Some(_)) if stream_on => Err(DynamoError::validation(format!(
            "Table already has an enabled stream: TableName: {table}"
        ))),
        (true, Some(_)) => Ok(view_type(stream)),
    }
}

/// A KMS key as DescribeTable reports it: an ARN as given; an alias name or key id as the ARN
/// of this region and account; DynamoDB's managed key alias when none was named.
pub fn kms_key_arn(key: Option<&str>, region: &str, account: &str) -> String {
    let key = key.unwrap_or(AWS_MANAGED_KEY_ALIAS);
    if key.starts_with("arn:") {
        key.to_string()
    } else if key.starts_with("alias/") {
        format!("arn:aws:kms:{region}:{account}:{key}")
    } else {
        format!("arn:aws:kms:{region}:{account}:key/{key}")
    }
}

impl TableSettings {
    /// A new table's settings from CreateTable's request.
    pub fn created(request: &CreateSettings, region: &str, account: &str) -> TableSettings {
        TableSettings {
            encryption: match &request.encryption {
                None | Some(EncryptionRequest::AwsOwnedKey) => Encryption::AwsOwnedKey,
                Some(EncryptionRequest::Kms { key }) => Encryption::Kms {
                    key_arn: kms_key_arn(key.as_deref(), region, account),
                },
            },
            table_class: request.table_class.map(|class| TableClassSetting {
                class,
                updated_ms: None,
            }),
            deletion_protection: request.deletion_protection.unwrap_or(false),
        }
    }

    /// The settings after UpdateTable's `request` (checked by [`crate::validate::update_table`]
    /// to change one setting at most), or DynamoDB's refusal of a change that changes nothing
    /// where DynamoDB refuses one. `None` when nothing changes (a same-value deletion protection,
    /// TableClass STANDARD on a table never given a class, the class it has).
    pub fn updated(
        &self,
        request: &UpdateSettings,
        region: &str,
        account: &str,
        now_ms: u64,
    ) -> Result<Option<TableSettings>, DynamoError> {
        let mut changed = self.clone();
        match &request.encryption {
            None => {}
            Some(EncryptionRequest::AwsOwnedKey) => {
                if self.encryption == Encryption::AwsOwnedKey {
                    return Err(DynamoError::validation(format!(
                        "{INVALID}Table is already encrypted by default"
                    )));
                }
                changed.encryption = Encryption::AwsOwnedKey;
            }
            Some(EncryptionRequest::Kms { key }) => {
                let key_arn = kms_key_arn(key.as_deref(), region, account);
                // Only the exact ARN re-sent is refused; an alias or key id naming the same key
                // re-encrypts on DynamoDB and is accepted (here it changes nothing).
                if let (Encryption::Kms { key_arn: current }, Some(given)) =
                    (&self.encryption, key.as_deref())
                    && given.starts_with("arn:")
                    && given == current
                {
                    return Err(DynamoError::validation(format!(
                        "{INVALID}Table is already encrypted with given KMSMasterKeyId. Use KMSMasterKeyId parameter if you want to change Master Key"
                    )));
                }
                changed.encryption = Encryption::Kms { key_arn };
            }
        }
        if let Some(class) = request.table_class {
            let current = self
                .table_class
                .map_or(TableClass::Standard, |setting| setting.class);
            if class != current {
                changed.table_class = Some(TableClassSetting {
                    class,
                    updated_ms: Some(now_ms),
                });
            }
        }
        if let Some(protection) = request.deletion_protection {
            changed.deletion_protection = protection;
        }
        Ok((changed != *self).then_some(changed))
    }

    /// Adds the settings' members to a table item (absent when at their defaults, except
    /// deletion protection, which writers always write).
    pub fn write_to(&self, item: &mut Map<String, Json>) {
        if let Encryption::Kms { key_arn } = &self.encryption {
            item.insert(
                SSE_KMS_KEY_ARN_ATTRIBUTE.to_string(),
                json!({ "S": key_arn }),
            );
        }
        if let Some(setting) = &self.table_class {
            item.insert(
                TABLE_CLASS_ATTRIBUTE.to_string(),
                json!({ "S": setting.class.name() }),
            );
            if let Some(at) = setting.updated_ms {
                item.insert(
                    TABLE_CLASS_UPDATED_MS_ATTRIBUTE.to_string(),
                    json!({ "N": at.to_string() }),
                );
            }
        }
        item.insert(
            DELETION_PROTECTION_ATTRIBUTE.to_string(),
            json!({ "BOOL": self.deletion_protection }),
        );
    }

    /// The settings of a table item; an item written before they existed has the defaults
    /// (AWS owned key, no class given, no deletion protection).
    pub fn read_from(item: &Json) -> Result<TableSettings, DynamoError> {
        let corrupt = |what: &str| DynamoError::internal(format!("corrupt table item: {what}"));
        let encryption = match item.get(SSE_KMS_KEY_ARN_ATTRIBUTE) {
            None => Encryption::AwsOwnedKey,
            Some(value) => Encryption::Kms {
                key_arn: value["S"]
                    .as_str()
                    .ok_or_else(|| corrupt("sse_kms_key_arn is not a string"))?
                    .to_string(),
            },
        };
        let table_class = match item.get(TABLE_CLASS_ATTRIBUTE) {
            None => None,
            Some(value) => {
                let class = value["S"]
                    .as_str()
                    .and_then(TableClass::parse)
                    .ok_or_else(|| corrupt("unknown table_class"))?;
                let updated_ms = match item.get(TABLE_CLASS_UPDATED_MS_ATTRIBUTE) {
                    None => None,
                    Some(value) => Some(
                        value["N"]
                            .as_str()
                            .and_then(|text| text.parse().ok())
                            .ok_or_else(|| corrupt("table_class_updated_ms is not a number"))?,
                    ),
                };
                Some(TableClassSetting { class, updated_ms })
            }
        };
        let deletion_protection = match item.get(DELETION_PROTECTION_ATTRIBUTE) {
            None => false,
            Some(value) => value["BOOL"]
                .as_bool()
                .ok_or_else(|| corrupt("deletion_protection is not a boolean"))?,
        };
        Ok(TableSettings {
            encryption,
            table_class,
            deletion_protection,
        })
    }

    /// Adds what DescribeTable reports of the settings to a table description, given a
    /// function that renders a unix-millisecond time as DynamoDB's JSON dates.
    pub fn describe_into(&self, description: &mut Json, date: impl Fn(u64) -> Json) {
        description["DeletionProtectionEnabled"] = json!(self.deletion_protection);
        if let Encryption::Kms { key_arn } = &self.encryption {
            description["SSEDescription"] = json!({
                "Status": "ENABLED",
                "SSEType": "KMS",
                "KMSMasterKeyArn": key_arn,
            });
        }
        if let Some(setting) = &self.table_class {
            let mut summary = json!({ "TableClass": setting.class.name() });
            if let Some(at) = setting.updated_ms {
                summary["LastUpdateDateTime"] = date(at);
            }
            description["TableClassSummary"] = summary;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(specification: Json) -> Result<Option<EncryptionRequest>, DynamoError> {
        encryption_request(&json!({ "SSESpecification": specification }))
    }

    fn message<T: std::fmt::Debug>(result: Result<T, DynamoError>) -> String {
        result.unwrap_err().message
    }

    #[test]
    fn sse_specifications_follow_dynamodb_rules() {
        assert_eq!(encryption_request(&json!({})), Ok(None));
        assert_eq!(sse(json!({})), Ok(Some(EncryptionRequest::AwsOwnedKey)));
        assert_eq!(
            sse(json!({"Enabled": false})),
            Ok(Some(EncryptionRequest::AwsOwnedKey))
        );
        assert_eq!(
            sse(json!({"Enabled": true})),
            Ok(Some(EncryptionRequest::Kms { key: None }))
        );
        assert_eq!(
            sse(json!({"SSEType": "KMS"})),
            Ok(Some(EncryptionRequest::Kms { key: None }))
        );
        assert_eq!(
            sse(json!({"Enabled": true, "SSEType": "KMS", "KMSMasterKeyId": "alias/mine"})),
            Ok(Some(EncryptionRequest::Kms {
                key: Some("alias/mine".to_string())
            }))
        );
        assert_eq!(
            message(sse(json!({"Enabled": false, "SSEType": "KMS"}))),
            "One or more parameter values were invalid: SSEType can not be specified if Enabled is false"
        );
        assert_eq!(
            message(sse(json!({"Enabled": false, "KMSMasterKeyId": "k"}))),
            "One or more parameter values were invalid: KMSMasterKeyId can not be specified if Enabled is false"
        );
        assert_eq!(
            message(sse(json!({"Enabled": true, "SSEType": "AES256"}))),
            "One or more parameter values were invalid: SSEType AES256 is not supported"
        );
        assert_eq!(
            message(sse(json!({"Enabled": true, "KMSMasterKeyId": "k"}))),
            "One or more parameter values were invalid: SSEType KMS is required if KMSMasterKeyId is specified"
        );
        assert_eq!(
            message(sse(json!({"SSEType": "DES"}))),
            "1 validation error detected: Value 'DES' at 'sSESpecification.sSEType' failed to satisfy constraint: Member must satisfy enum value set: [AES256, KMS]"
        );
        assert_eq!(
            message(sse(
                json!({"Enabled": true, "SSEType": "KMS", "KMSMasterKeyId": ""})
            )),
            "1 validation error detected: Value '' at 'sSESpecification.kMSMasterKeyId' failed to satisfy constraint: Member must have length greater than or equal to 1"
        );
        assert_eq!(
            sse(json!({"Enabled": "yes"})).unwrap_err().type_name,
            "SerializationException"
        );
        assert_eq!(
            encryption_request(&json!({"SSESpecification": []}))
                .unwrap_err()
                .type_name,
            "SerializationException"
        );
    }

    #[test]
    fn key_arns_are_reported_in_this_region_and_account() {
        let arn = |key| kms_key_arn(key, "us-east-1", "000000000000");
        assert_eq!(
            arn(None),
            "arn:aws:kms:us-east-1:000000000000:alias/aws/dynamodb"
        );
        assert_eq!(
            arn(Some("alias/mine")),
            "arn:aws:kms:us-east-1:000000000000:alias/mine"
        );
        assert_eq!(
            arn(Some("1234abcd-12ab-34cd-56ef-1234567890ab")),
            "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        );
        assert_eq!(
            arn(Some("arn:aws:kms:eu-west-1:111:key/x")),
            "arn:aws:kms:eu-west-1:111:key/x"
        );
    }

    #[test]
    fn stream_changes_follow_dynamodb() {
        let stream = |specification: Json| {
            stream_specification(&json!({ "StreamSpecification": specification }))
        };
        let disabled = stream(json!({"StreamEnabled": false})).unwrap().unwrap();
        assert_eq!(check_create_stream(&disabled), Ok(None));
        assert_eq!(
            message(check_update_stream(&disabled, "t", false)),
            "Table has no stream to disable: TableName: t"
        );
        assert_eq!(check_update_stream(&disabled, "t", true), Ok(None));
        let with_view = stream(json!({"StreamEnabled": false, "StreamViewType": "KEYS_ONLY"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            message(check_create_stream(&with_view)),
            "One or more parameter values were invalid: Table is being created with a stream disabled, UpdateViewType should not be specified"
        );
        assert_eq!(
            message(check_update_stream(&with_view, "t", true)),
            "One or more parameter values were invalid: If stream is being disabled, then UpdateViewType must not be specified"
        );
        let enabled_bare = stream(json!({"StreamEnabled": true})).unwrap().unwrap();
        assert_eq!(
            message(check_create_stream(&enabled_bare)),
            "One or more parameter values were invalid: Table is being created with a stream enabled, UpdateViewType is required"
        );
        let enabled = stream(json!({"StreamEnabled": true, "StreamViewType": "NEW_IMAGE"}))
            .unwrap()
            .unwrap();
        let new_image = Some(shoal_model::stream::ViewType::NewImage);
        assert_eq!(check_create_stream(&enabled), Ok(new_image));
        assert_eq!(check_update_stream(&enabled, "t", false), Ok(new_image));
        assert_eq!(
            message(check_update_stream(&enabled, "t", true)),
            "Table already has an enabled stream: TableName: t"
        );
        assert_eq!(
            message(stream(json!({"StreamViewType": "NEW_IMAGE"}))),
            "1 validation error detected: Value null at 'streamSpecification.streamEnabled' failed to satisfy constraint: Member must not be null"
        );
        assert_eq!(
            message(stream(
                json!({"StreamEnabled": false, "StreamViewType": "ALL"})
            )),
            "1 validation error detected: Value 'ALL' at 'streamSpecification.streamViewType' failed to satisfy constraint: Member must satisfy enum value set: [OLD_IMAGE, KEYS_ONLY, NEW_AND_OLD_IMAGES, NEW_IMAGE]"
        );
    }

    fn update(
        settings: &TableSettings,
        request: UpdateSettings,
    ) -> Result<Option<TableSettings>, DynamoError> {
        settings.updated(&request, "us-east-1", "000000000000", 5_000)
    }

    #[test]
    fn updates_change_one_setting_or_refuse_what_dynamodb_refuses() {
        let default = TableSettings::default();
        // Encryption: the default re-sent is refused, KMS is set, the exact ARN re-sent is
        // refused, an alias naming a key is accepted.
        assert_eq!(
            message(update(
                &default,
                UpdateSettings {
                    encryption: Some(EncryptionRequest::AwsOwnedKey),
                    ..Default::default()
                }
            )),
            "One or more parameter values were invalid: Table is already encrypted by default"
        );
        let kms = update(
            &default,
            UpdateSettings {
                encryption: Some(EncryptionRequest::Kms { key: None }),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
        let arn = "arn:aws:kms:us-east-1:000000000000:alias/aws/dynamodb".to_string();
        assert_eq!(
            kms.encryption,
            Encryption::Kms {
                key_arn: arn.clone()
            }
        );
        assert!(
            message(update(
                &kms,
                UpdateSettings {
                    encryption: Some(EncryptionRequest::Kms {
                        key: Some(arn.clone())
                    }),
                    ..Default::default()
                }
            ))
            .contains("Table is already encrypted with given KMSMasterKeyId")
        );
        assert_eq!(
            update(
                &kms,
                UpdateSettings {
                    encryption: Some(EncryptionRequest::Kms {
                        key: Some("alias/aws/dynamodb".to_string())
                    }),
                    ..Default::default()
                }
            ),
            Ok(None)
        );
        let back = update(
            &kms,
            UpdateSettings {
                encryption: Some(EncryptionRequest::AwsOwnedKey),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(back.encryption, Encryption::AwsOwnedKey);
        // Table class: STANDARD on a table never given one changes nothing; a change is dated.
        let class = |class| UpdateSettings {
            table_class: Some(class),
            ..Default::default()
        };
        assert_eq!(update(&default, class(TableClass::Standard)), Ok(None));
        let infrequent = update(&default, class(TableClass::StandardInfrequentAccess))
            .unwrap()
            .unwrap();
        assert_eq!(
            infrequent.table_class,
            Some(TableClassSetting {
                class: TableClass::StandardInfrequentAccess,
                updated_ms: Some(5_000)
            })
        );
        assert_eq!(
            update(&infrequent, class(TableClass::StandardInfrequentAccess)),
            Ok(None)
        );
        // Deletion protection: toggled, a same-value re-send changes nothing.
        let protect = |on| UpdateSettings {
            deletion_protection: Some(on),
            ..Default::default()
        };
        assert_eq!(update(&default, protect(false)), Ok(None));
        let protected = update(&default, protect(true)).unwrap().unwrap();
        assert!(protected.deletion_protection);
        assert_eq!(update(&protected, protect(true)), Ok(None));
    }

    #[test]
    fn settings_round_trip_through_the_table_item_and_default_when_absent() {
        assert_eq!(
            TableSettings::read_from(&json!({})),
            Ok(TableSettings::default())
        );
        let settings = TableSettings {
            encryption: Encryption::Kms {
                key_arn: "arn:aws:kms:us-east-1:1:key/k".to_string(),
            },
            table_class: Some(TableClassSetting {
                class: TableClass::StandardInfrequentAccess,
                updated_ms: Some(1_700_000_000_123),
            }),
            deletion_protection: true,
        };
        let mut item = Map::new();
        settings.write_to(&mut item);
        assert_eq!(TableSettings::read_from(&Json::Object(item)), Ok(settings));
        let mut item = Map::new();
        TableSettings::default().write_to(&mut item);
        assert_eq!(
            Json::Object(item.clone()),
            json!({"deletion_protection": {"BOOL": false}})
        );
        assert_eq!(
            TableSettings::read_from(&Json::Object(item)),
            Ok(TableSettings::default())
        );
    }

    #[test]
    fn descriptions_report_what_dynamodb_reports() {
        let date = |ms: u64| json!(ms / 1000);
        let mut description = json!({});
        TableSettings::default().describe_into(&mut description, date);
        assert_eq!(description, json!({"DeletionProtectionEnabled": false}));
        let settings = TableSettings {
            encryption: Encryption::Kms {
                key_arn: "arn:k".to_string(),
            },
            table_class: Some(TableClassSetting {
                class: TableClass::Standard,
                updated_ms: Some(2_000),
            }),
            deletion_protection: true,
        };
        let mut description = json!({});
        settings.describe_into(&mut description, date);
        assert_eq!(
            description,
            json!({
                "DeletionProtectionEnabled": true,
                "SSEDescription": {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": "arn:k"},
                "TableClassSummary": {"TableClass": "STANDARD", "LastUpdateDateTime": 2},
            })
        );
    }
}
