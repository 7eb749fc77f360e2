//! Helpers for the `agents` benchmark (benches/agents.rs).
pub mod agent;
pub mod client;
pub mod floors;
pub mod stats;
pub mod sys;
