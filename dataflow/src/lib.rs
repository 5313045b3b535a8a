//! The topsellers program: config, CLI, the dataflow's construction, and the run/batch drivers.
#![warn(missing_docs)]

mod aggregates;
pub mod batch;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod generate;
pub mod handover;
pub mod history;
pub mod kafka_live;
pub mod progress;
pub mod render;
pub mod run;
pub mod worker;

pub use config::{Config, ConfigError, Scoring};
