//! The ZopToken operator library: API types, controllers and the pure core.
#![doc = "See `api` for the custom resources."]

pub mod api;
pub mod cli;
pub mod controller;
pub mod devices;
pub mod gateway;
pub mod labels;
pub mod ledger;
pub mod metrics;
pub mod run;
pub mod scheduler;
pub mod tasks;
