//! The side-by-side report as JSON: every row with each mechanism's rounds, pooled
//! percentiles or rates, and mmipc/other ratios; the targets with their readings; the
//! run's facts and outcome.

use serde_json::{Value, json};

use super::targets::{fan_targets, limits, targets};
use super::{Meta, outcome};
use crate::rows::{Cell, MMIPC_RING_RULE, Row, Sample};
use crate::transport::Mech;

/// One figure of each round of `cell` that has it, as a JSON array.
fn per_round<T: serde::Serialize>(cell: &Cell, figure: impl Fn(&Sample) -> Option<T>) -> Value {
    json!(cell.samples.iter().filter_map(figure).collect::<Vec<T>>())
}

fn cell_json(row: &Row, cell: &Cell) -> Value {
    let mut v = json!({
        "headline": cell.headline(),
        "rounds": cell.rounds(),
        "errors": cell.errors,
    });
    if let Some(h) = cell.pooled() {
        v["unit"] = json!("ns");
        v["p50_median_of_rounds_ns"] = json!(cell.headline());
        v["pooled"] = json!({
            "count": h.len(),
            "p50_ns": h.value_at_quantile(0.5),
            "p99_ns": h.value_at_quantile(0.99),
            "p999_ns": h.value_at_quantile(0.999),
            "max_ns": h.max(),
        });
        v["round_trips_incl_warmup"] = per_round(cell, |s| match s {
            Sample::Latency { round_trips, .. } => Some(*round_trips),
            _ => None,
        });
        v["round_p99_ns"] = per_round(cell, |s| match s {
            Sample::Latency { hist, .. } => Some(hist.value_at_quantile(0.99)),
            _ => None,
        });
    } else if cell
        .samples
        .iter()
        .any(|s| matches!(s, Sample::Throughput { .. }))
    {
        v["unit"] = json!("msgs/s");
        v["msgs_per_s"] = json!(cell.headline());
        v["mb_per_s"] = json!(
            cell.headline()
                .map(|r| r * row.size.unwrap_or(0) as f64 / 1e6)
        );
        v["per_receiver_msgs_per_s"] = per_round(cell, |s| match s {
            Sample::Throughput { per_receiver, .. } => Some(per_receiver.clone()),
            _ => None,
        });
        v["messages"] = per_round(cell, |s| match s {
            Sample::Throughput { messages, .. } => Some(*messages),
            _ => None,
        });
        v["sender_cpu_us_per_msg"] = json!(cell.sender_cpu().map(|ns| ns / 1e3));
        v["sender_cpu_us_per_msg_rounds"] = json!(
            cell.sender_cpu_rounds()
                .iter()
                .map(|ns| ns / 1e3)
                .collect::<Vec<_>>()
        );
    } else {
        v["unit"] = json!(row.unit);
    }
    v
}

/// The whole report as JSON.
pub fn json(meta: &Meta, rows: &[Row]) -> Value {
    let rows_json: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mechs: serde_json::Map<String, Value> = r
                .cells
                .iter()
                .map(|(m, c)| (m.id().to_string(), cell_json(r, c)))
                .collect();
            let ring = match (r.size, r.cells.keys().any(|m| m.is_mmipc())) {
                (Some(size), true) => Some(meta.mmipc_ring(size)),
                _ => None,
            };
            json!({
                "id": r.id,
                "group": r.group,
                "title": r.title,
                "size": r.size,
                "receivers": r.receivers,
                "unit": r.unit,
                "higher_is_better": r.higher_is_better,
                "mmipc_ring_capacity": ring,
                "mechanisms": mechs,
                "ratios_mmipc_over_peer": r.ratios(),
            })
        })
        .collect();
    let mut targets: Vec<Value> = targets(rows)
        .iter()
        .map(|t| {
            json!({
                "row": t.row.id,
                "mmipc": t.a.id(),
                "peer": t.b.id(),
                "ratio": t.ratio,
                "reading": t.reading(),
            })
        })
        .collect();
    targets.extend(limits(rows).iter().map(|l| {
        json!({
            "row": l.row.id,
            "mmipc": l.target.mech.id(),
            "peer": null,
            "target": l.name(),
            "value": l.value,
            "limit": l.target.limit,
            "strict": l.target.strict,
            "unit": l.row.unit,
            "ratio": l.value / l.target.limit,
            "met": l.met(),
            "reading": l.reading(),
        })
    }));
    targets.extend(fan_targets(rows).iter().map(|t| {
        json!({
            "row": t.target.a.0,
            "mmipc": t.target.a.1.id(),
            "peer": t.target.b.1.id(),
            "peer_row": t.target.b.0,
            "target": t.name(),
            "figure": match t.target.figure {
                super::targets::Figure::Rate => "msgs_per_s",
                super::targets::Figure::SenderCpu => "sender_cpu_us_per_msg",
            },
            "ratio": t.ratio,
            "bound": t.target.bound,
            "at_least": t.target.at_least,
            "met": t.met(),
            "reading": t.reading(),
        })
    }));
    let (ok, peers_ok) = outcome(rows);
    json!({
        "tool": "mmipc-bench compare",
        "date": meta.date,
        "machine": { "cpu": meta.cpu, "kernel": meta.kernel },
        "pinning": meta.pinning,
        "rounds": meta.rounds(),
        "latency_warm_measure_ms": [meta.latency_ms().0, meta.latency_ms().1],
        "throughput_warm_measure_ms": [meta.throughput_ms().0, meta.throughput_ms().1],
        "command": meta.command,
        "seconds": meta.seconds,
        "mmipc_ring_capacity": meta.forced_ring(),
        "mmipc_ring_rule": match meta.forced_ring() {
            Some(_) => "fixed (--mmipc-ring-capacity)",
            None => MMIPC_RING_RULE,
        },
        "mmipc_ring_default_for_other_rows": ::mmipc::DEFAULT_RING_CAPACITY,
        "idle_ms": meta.idle_ms(),
        "iceoryx2_version": crate::transport::ICEORYX2_VERSION,
        "mechanisms": Mech::ALL.iter().map(|m| json!({"id": m.id(), "label": m.label()})).collect::<Vec<_>>(),
        "rows": rows_json,
        "targets": targets,
        "ok": ok,
        "peers_ok": peers_ok,
    })
}
