//! The watchdog: rules, deadlines, alarms and their escalation.

pub mod calendar;
pub mod engine;
pub mod rules;
