//! The JSON report (schema 1).
use anyhow::{Context as _, Result};

use crate::report::Report;

pub(crate) fn report(r: &Report) -> Result<String> {
    serde_json::to_string_pretty(r).context("encoding the report as JSON failed")
}

/// One line per report, for `watch --plain --format json`.
pub(crate) fn line(r: &Report) -> Result<String> {
    serde_json::to_string(r).context("encoding the report as JSON failed")
}
