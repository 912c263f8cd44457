//! Kiseki's versioned wire types (generated from `proto/` with protox + tonic-prost-build,
//! no `protoc`) and the typed clients built on them: today the key service and
//! [`RemoteKeySource`], the storage server's way to get tenant keys from a key server.
//!
//! This crate owns message shapes, their conversion to and from domain types, and the mapping of
//! domain errors to gRPC statuses. It must never hold policy or state beyond client caches, and
//! never change a field number of a published message: add fields, add `v2` packages.

pub mod bulk;
mod chunk_pieces;
mod key_material;
mod native;
mod remote_keys;

pub use chunk_pieces::{frame_pieces, FrameAssembler, FrameAssemblyError};
pub use key_material::{
    key_error_status, status_key_error, tenant_key_material, tenant_keys_response,
    KEY_MESSAGE_BYTES_MAX, KEY_REQUEST_BYTES_MAX,
};
pub use native::{
    attr_from_wire, attr_to_wire, chunk_id_from_wire, extent_from_wire, extent_to_wire,
    kind_from_wire, kind_to_wire, namespace_error_status, status_namespace_error,
    ACCESS_KEY_HEADER, CHUNK_PIECE_BYTES, ERROR_KIND_HEADER, H2_FRAME_BYTES_MAX,
    LAYOUT_EXTENTS_MAX, NATIVE_MESSAGE_BYTES_MAX, NATIVE_PROTOCOL_VERSION, READDIR_ENTRIES_MAX,
    SECRET_KEY_HEADER,
};
pub use remote_keys::RemoteKeySource;

/// Generated code of the `kiseki.keyserver.*` packages.
pub mod keyserver {
    /// Version 1 of the key service.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("kiseki.keyserver.v1");
    }
}

/// Generated code of the `kiseki.cluster.*` packages: the node-to-node service of a cluster.
pub mod cluster {
    /// Version 1 of the node-to-node service (see `cluster.proto`).
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("kiseki.cluster.v1");
    }
}

/// Generated code of the `kiseki.namespace.*` packages: the native client protocol.
pub mod namespace {
    /// Version 1 of the native client protocol (see `native.proto`).
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("kiseki.namespace.v1");
    }
}
