//! The rules that take a pod out of vigil's hands whatever the selectors say: its namespace is in
//! `k8s.excluded_namespaces`, or it is annotated `vigil.io/instrument: "false"`. Discovery excludes its
//! processes and coverage does not expect it to be monitored; both ask here.

use super::store::PodMeta;

/// Annotation that opts a pod into (`"true"`) or out of (`"false"`) monitoring.
pub const INSTRUMENT_ANNOTATION: &str = "vigil.io/instrument";

/// Why a pod is out of vigil's hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptOut {
    /// Its namespace is in `k8s.excluded_namespaces`.
    ExcludedNamespace,
    /// It is annotated `vigil.io/instrument: "false"`.
    Annotated,
}

/// What the pod's `vigil.io/instrument` annotation says: `Some(true)` for `"true"`, `Some(false)` for
/// `"false"`, `None` otherwise.
pub fn instrument_annotation(pod: &PodMeta) -> Option<bool> {
    match pod
        .annotations
        .get(INSTRUMENT_ANNOTATION)
        .map(String::as_str)
    {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// Whether `pod` is opted out, and why (the namespace rule first).
pub fn opt_out(pod: &PodMeta, excluded_namespaces: &[String]) -> Option<OptOut> {
    if excluded_namespaces.contains(&pod.namespace) {
        Some(OptOut::ExcludedNamespace)
    } else if instrument_annotation(pod) == Some(false) {
        Some(OptOut::Annotated)
    } else {
        None
    }
}
