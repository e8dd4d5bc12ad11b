//! Shoal's item model and expression engine: DynamoDB's attribute values, exact numbers, keys,
//! the binary item and sort-key encodings, the partition hash, and the expression language
//! (parse, validate, evaluate). Pure: no IO, no async, no clock. See README.md and FORMAT.md.

pub mod encoding;
pub mod error;
pub mod expression;
pub mod index;
pub mod json;
pub mod key;
pub mod legacy;
pub mod messages;
pub mod number;
pub mod request;
pub mod request_codec;
pub mod split;
pub mod stream;
pub mod transaction;
pub mod value;

pub use error::{Error, Result};
pub use number::Number;
pub use value::{AttributeValue, Item};
