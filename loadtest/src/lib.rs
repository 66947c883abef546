//! A faithful, cheap reproduction of the official Rinha de Backend 2024/Q1 Gatling
//! simulation (`RinhaBackendCrebitosSimulation`), with the official scoring, a black-box
//! balance audit, and text, JSON and HTML reports.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checks;
pub mod cli;
pub mod client;
pub mod model;
pub mod official;
pub mod report;
pub mod schedule;
pub mod simulation;
pub mod soak;
pub mod stats;
pub mod sweep;
