//! Metrics: the registry vigil serves and the helpers every stage registers its families with
//! ([`registry`]).

mod registry;

pub use registry::{counter_vec, encode, gauge_vec, new_registry, register};
