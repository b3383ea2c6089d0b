//! The end-to-end harness: a real local control plane started by kwokctl.
