//! Version 1, frozen (schema/shoal_v1.fbs): just enough to answer a version 1 client. Its
//! requests carried DynamoDB JSON text; this router speaks version 2 only, so a sound
//! version 1 request is answered, in version 1's own response format, with the version error
//! (message.rs), and its client shows that error to its caller. Nothing else of version 1 is
//! read.

use flatbuffers::FlatBufferBuilder;

use crate::generated_v1::shoal::client as wire_v1;
use crate::message::verifier_options;

/// Version 1's file identifiers.
pub const REQUEST_IDENTIFIER_V1: &str = "SHQ1";
pub const RESPONSE_IDENTIFIER_V1: &str = "SHS1";

/// The request id of a sound version 1 request; `None` when the buffer is not one (another
/// identifier, or the verifier refuses it).
pub(crate) fn request_id(buffer: &[u8]) -> Option<u64> {
    if buffer.len() < crate::limits::BODY_BYTES_MIN
        || !wire_v1::request_buffer_has_identifier(buffer)
    {
        return None;
    }
    wire_v1::root_as_request_with_opts(&verifier_options(), buffer)
        .ok()
        .map(|request| request.request_id())
}

/// A version 1 response buffer carrying an error.
pub(crate) fn error_response(request_id: u64, type_name: &str, message: &str) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::with_capacity(128 + type_name.len() + message.len());
    let type_name = builder.create_string(type_name);
    let message = builder.create_string(message);
    let error = wire_v1::Error::create(
        &mut builder,
        &wire_v1::ErrorArgs {
            type_name: Some(type_name),
            message: Some(message),
            item: None,
        },
    );
    let response = wire_v1::Response::create(
        &mut builder,
        &wire_v1::ResponseArgs {
            request_id,
            body: None,
            error: Some(error),
        },
    );
    builder.finish(response, Some(RESPONSE_IDENTIFIER_V1));
    builder.finished_data().to_vec()
}
