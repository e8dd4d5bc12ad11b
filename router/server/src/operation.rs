//! The DynamoDB operations a [`Router`] serves, and its one dispatch table: the HTTP API and the
//! native protocol both name an operation in their own wire form (an `X-Amz-Target` name, a
//! schema value) and hand it here by its DynamoDB name. The four DynamoDB Streams operations
//! (`DynamoDBStreams_20120810`) are here too: they share the endpoint and the table metadata.

use serde_json::Value as Json;

use crate::{DynamoError, Router};

/// An operation the router core serves. `DescribeEndpoints` is not one: it names the front end
/// that answers it, so each front end answers it itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateTable,
    DeleteTable,
    DescribeTable,
    ListTables,
    UpdateTable,
    DescribeLimits,
    TagResource,
    UntagResource,
    ListTagsOfResource,
    UpdateTimeToLive,
    DescribeTimeToLive,
    PutItem,
    GetItem,
    UpdateItem,
    DeleteItem,
    Query,
    Scan,
    BatchGetItem,
    BatchWriteItem,
    TransactWriteItems,
    TransactGetItems,
    ListStreams,
    DescribeStream,
    GetShardIterator,
    GetRecords,
}

impl Operation {
    pub const ALL: [Operation; 25] = [
        Operation::CreateTable,
        Operation::DeleteTable,
        Operation::DescribeTable,
        Operation::ListTables,
        Operation::UpdateTable,
        Operation::DescribeLimits,
        Operation::TagResource,
        Operation::UntagResource,
        Operation::ListTagsOfResource,
        Operation::UpdateTimeToLive,
        Operation::DescribeTimeToLive,
        Operation::PutItem,
        Operation::GetItem,
        Operation::UpdateItem,
        Operation::DeleteItem,
        Operation::Query,
        Operation::Scan,
        Operation::BatchGetItem,
        Operation::BatchWriteItem,
        Operation::TransactWriteItems,
        Operation::TransactGetItems,
        Operation::ListStreams,
        Operation::DescribeStream,
        Operation::GetShardIterator,
        Operation::GetRecords,
    ];

    /// DynamoDB's name of the operation.
    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateTable => "CreateTable",
            Operation::DeleteTable => "DeleteTable",
            Operation::DescribeTable => "DescribeTable",
            Operation::ListTables => "ListTables",
            Operation::UpdateTable => "UpdateTable",
            Operation::DescribeLimits => "DescribeLimits",
            Operation::TagResource => "TagResource",
            Operation::UntagResource => "UntagResource",
            Operation::ListTagsOfResource => "ListTagsOfResource",
            Operation::UpdateTimeToLive => "UpdateTimeToLive",
            Operation::DescribeTimeToLive => "DescribeTimeToLive",
            Operation::PutItem => "PutItem",
            Operation::GetItem => "GetItem",
            Operation::UpdateItem => "UpdateItem",
            Operation::DeleteItem => "DeleteItem",
            Operation::Query => "Query",
            Operation::Scan => "Scan",
            Operation::BatchGetItem => "BatchGetItem",
            Operation::BatchWriteItem => "BatchWriteItem",
            Operation::TransactWriteItems => "TransactWriteItems",
            Operation::TransactGetItems => "TransactGetItems",
            Operation::ListStreams => "ListStreams",
            Operation::DescribeStream => "DescribeStream",
            Operation::GetShardIterator => "GetShardIterator",
            Operation::GetRecords => "GetRecords",
        }
    }

    /// The operation of a DynamoDB name; `None` for one the router core does not serve.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL
            .into_iter()
            .find(|operation| operation.name() == name)
    }
}

impl Router {
    /// Runs `operation` on its DynamoDB request body: the one dispatch table of the front ends.
    pub async fn dispatch(&self, operation: Operation, body: Json) -> Result<Json, DynamoError> {
        let started = std::time::Instant::now();
        let answer = self.run(operation, body).await;
        let error = answer.as_ref().err().map(|error| error.type_name.as_str());
        self.record_request(operation.name(), started.elapsed(), error);
        answer
    }

    async fn run(&self, operation: Operation, body: Json) -> Result<Json, DynamoError> {
        match operation {
            Operation::CreateTable => self.create_table(body).await,
            Operation::DeleteTable => self.delete_table(body).await,
            Operation::DescribeTable => self.describe_table(body).await,
            Operation::ListTables => self.list_tables(body).await,
            Operation::UpdateTable => self.update_table(body).await,
            Operation::DescribeLimits => self.describe_limits(body),
            Operation::TagResource => self.tag_resource(body).await,
            Operation::UntagResource => self.untag_resource(body).await,
            Operation::ListTagsOfResource => self.list_tags_of_resource(body).await,
            Operation::UpdateTimeToLive => self.update_time_to_live(body).await,
            Operation::DescribeTimeToLive => self.describe_time_to_live(body).await,
            Operation::PutItem => self.put_item(body).await,
            Operation::GetItem => self.get_item(body).await,
            Operation::UpdateItem => self.update_item(body).await,
            Operation::DeleteItem => self.delete_item(body).await,
            Operation::Query => self.query(body).await,
            Operation::Scan => self.scan(body).await,
            Operation::BatchGetItem => self.batch_get_item(body).await,
            Operation::BatchWriteItem => self.batch_write_item(body).await,
            Operation::TransactWriteItems => self.transact_write_items(body).await,
            Operation::TransactGetItems => self.transact_get_items(body).await,
            Operation::ListStreams => self.list_streams(body).await,
            Operation::DescribeStream => self.describe_stream(body).await,
            Operation::GetShardIterator => self.get_shard_iterator(body).await,
            Operation::GetRecords => self.get_records(body).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        let mut names = std::collections::BTreeSet::new();
        for operation in Operation::ALL {
            assert_eq!(Operation::from_name(operation.name()), Some(operation));
            assert!(names.insert(operation.name()));
        }
        assert_eq!(Operation::from_name("DescribeEndpoints"), None);
        assert_eq!(Operation::from_name("putitem"), None);
    }
}
