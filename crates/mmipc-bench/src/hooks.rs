//! Rows that are not measured yet, each behind a function that returns rows for the report.
//!
//! Every function returns an empty list for now. To add a figure, build scalar rows and fill
//! one sample per round and mechanism; they are rendered as a table per `group` and go into
//! the JSON like the measured rows:
//!
//! ```ignore
//! let mut row = Row::scalar("connect-ms", "life cycle", "new subscriber → Connected", "ms", false);
//! row.add(Mech::MmipcDefault, Ok(Sample::Scalar(1.8)));
//! ```
//!
//! `Ctx::fresh` gives a private directory and a unique name per measurement; peer processes
//! for new roles go in `crate::peer`.

use anyhow::Result;

use crate::harness::{Ctx, Settings};
use crate::report::Row;

/// Time from creating a subscriber in a new process to the publisher's `Connected` event (and
/// the first message received), per mechanism.
pub fn connect_time(_ctx: &Ctx, _s: &Settings) -> Result<Vec<Row>> {
    Ok(Vec::new())
}

/// Time from `kill -9` of a subscriber process to the publisher's `Disconnected` event.
pub fn crash_detection(_ctx: &Ctx, _s: &Settings) -> Result<Vec<Row>> {
    Ok(Vec::new())
}

/// Memory: resident and shared memory of a publisher and a subscriber process.
pub fn memory(_ctx: &Ctx, _s: &Settings) -> Result<Vec<Row>> {
    Ok(Vec::new())
}

/// All of the above, in report order.
pub fn extra_rows(ctx: &Ctx, s: &Settings) -> Result<Vec<Row>> {
    let mut rows = connect_time(ctx, s)?;
    rows.extend(crash_detection(ctx, s)?);
    rows.extend(memory(ctx, s)?);
    Ok(rows)
}
