//! The topsellers program: config, CLI, the jobs the workers run, and the `run` / `batch` /
//! `generate` / `cluster` commands.
//!
//! How a start proceeds, module by module:
//! - [`cli`], [`config`] ([`config_file`]): flags and the config file, read into types and checked once
//!   ([`config::Settings`]);
//! - [`job`]: what the workers do, decided once ([`job::Mode`]: batch or serve), from the
//!   history's listing ([`lake`]) and the hand-over to Kafka ([`handover`]);
//! - [`serve`]: the serving side (HTTP, the publisher, `/readyz`);
//! - [`workers`]: the timely workers, in one process or a [`cluster`], each running
//!   [`worker`]: its [`graph`], then the [`input`] loops (backfill, then generator or Kafka;
//!   live readers tell each other how far they are through the dataflow: [`gossip`]);
//! - [`context`]: what they share ([`stop`] signal, errors, [`progress`]);
//! - [`run`], [`batch`], [`generate`]: the commands.
#![warn(missing_docs)]

pub mod availability;
pub mod batch;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod config_file;
pub mod context;
pub mod error;
pub mod generate;
pub mod gossip;
pub mod graph;
pub mod handover;
pub mod input;
pub mod job;
pub mod lake;
pub mod progress;
pub mod run;
pub mod serve;
pub mod signals;
pub mod state;
pub mod stop;
pub mod worker;
pub mod workers;

pub use config::{Config, ConfigError, Scoring, Settings};
pub use error::{DriverError, RunError};
pub use stop::Stop;
