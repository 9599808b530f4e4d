//! `tcpcong compare BEFORE AFTER`: two sets of recordings (each a file, a
//! folder or a glob) through the engine, one after the other, and side by
//! side: per-state shares, the change rate, typical stays and the flows
//! most in trouble, with the differences that matter called out.

use std::io::{self, BufWriter, Write};

use super::{open_dataset, tell_duplicates, tell_no_flow, warn_losses, Selection};
use crate::analyze::compare::Side;
use crate::analyze::engine::durations::{self, Computed};
use crate::analyze::engine::{Accounting, EngineConfig, Unit};
use crate::analyze::render::compare::Comparison;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub before: String,
    pub after: String,
    pub select: Selection,
    pub accounting: Accounting,
    /// The flows most in trouble shown per side.
    pub top: usize,
    pub json: bool,
    pub threads: usize,
}

/// Stays are timed in microseconds: a comparison's medians are often
/// below a millisecond on a LAN.
const STAY_UNIT: Unit = Unit::Micros;

fn side(plan: &Plan, input: &str) -> Result<Side> {
    let data = open_dataset(&[input.to_string()])?;
    let span = plan.select.span(&data)?;
    let (lost, gaps) = (data.lost_events, data.gaps);
    let cfg = EngineConfig {
        accounting: plan.accounting,
        lifecycle: data.lifecycle,
        start_ns: span.start_ns,
        until_ns: span.until_ns,
        interval_ns: None,
        align: false,
        hist_unit: STAY_UNIT,
    };
    let Computed {
        summary,
        duplicates,
    } = durations::compute(data, &plan.select.rows(), &cfg, plan.threads, span.end_ns)?;
    tell_duplicates(duplicates);
    warn_losses(lost, Some(gaps), &summary);
    let side = Side::of(&summary, plan.top);
    if side.flows == 0 {
        tell_no_flow(input, &plan.select);
    }
    Ok(side)
}

pub fn run(plan: &Plan) -> Result<()> {
    let before = side(plan, &plan.before)?;
    let after = side(plan, &plan.after)?;
    let c = Comparison {
        before: (&plan.before, &before),
        after: (&plan.after, &after),
        unit_ns: STAY_UNIT.ns(),
    };
    let mut out = BufWriter::new(io::stdout().lock());
    if plan.json {
        c.write_json(&mut out)
    } else {
        c.write_table(&mut out)
    }
    .and_then(|()| out.flush())
    .map_err(Error::Stdout)
}
