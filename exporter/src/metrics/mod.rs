//! Metrics: the registry vigil serves and the helpers every stage registers its families with
//! ([`registry`]); the RED families ([`red`]) and their series store ([`series`]), which records the
//! exchanges capture yields ([`Exchange`]) under their identity labels ([`labels`]) and routes
//! ([`routes`]) into lock-free histograms ([`histogram`]), within the node's budget of label sets, and
//! removes idle series; vigil's own process metrics ([`process`]); and what `/metrics` writes
//! ([`exposition`]).
//!
//! This stage imports no other stage (only the configuration): every stage registers its families
//! here, so anything it imported would be a circle.

mod exchange;
mod exposition;
mod histogram;
pub mod labels;
mod process;
mod red;
mod registry;
pub mod routes;
mod series;

pub use exchange::{Call, Exchange, Measure, Side, UNKNOWN_METHOD, UNKNOWN_ROUTE};
pub use exposition::{Exposition, RedExposition};
pub use labels::ServiceLabels;
pub use red::RedFamilies;
pub use registry::{counter_vec, encode, gauge_vec, new_registry, register};
pub use series::{PROCESS_GONE_GRACE, RedSeries};
