//! The zone test for keys whose history is only completed writes and reads (Gibbons & Korach
//! 1997, §4: O(n log n) for read-mapped registers).
//!
//! Every value forms a *cluster*: its one writer and the reads that returned it (the initial
//! absent value has a virtual writer before everything). Let `min_end` be the earliest return in
//! the cluster and `max_start` the latest invoke. When `min_end < max_start`, the value must be
//! current throughout `[min_end, max_start]`: a *forward zone*. Otherwise all of the cluster can
//! happen at one instant inside `[max_start, min_end]`: a *backward zone*. The history is
//! linearizable iff no read returns before its writer is invoked, no two forward zones overlap,
//! and no backward zone lies inside a forward zone.

use std::collections::BTreeMap;

use super::model::{ABSENT, JUNK, KeyModel, Pre};

/// A cluster's zone in history event indices; the virtual initial write is at -1.
#[derive(Clone, Debug)]
struct Zone {
    /// Start of the zone.
    low: i128,
    /// End of the zone.
    high: i128,
    /// Steps of the cluster that define `low` and `high` (and the writer).
    witnesses: Vec<usize>,
}

/// Whether the model has only completed unconditional writes of non-absent values and reads,
/// with every value written once: the shape the zone test decides.
pub(super) fn applies(model: &KeyModel) -> bool {
    model.pooled.is_empty()
        && model.steps.iter().all(|step| {
            let shape = match (step.pre, step.post) {
                (Pre::Any, Some(value)) => value != ABSENT,
                (Pre::Eq(_), None) => true,
                _ => false,
            };
            shape && !step.optional()
        })
        && model.values.iter().skip(JUNK as usize + 1).all(|info| info.writers <= 1)
}

/// Runs the zone test; on failure returns the steps that witness the conflict.
pub(super) fn check(model: &KeyModel) -> Result<(), Vec<usize>> {
    let span = |step: usize| {
        let spec = &model.steps[step];
        let start = i128::from(model.event_indices[spec.invoke_seq as usize]);
        (start, i128::from(model.event_indices[spec.return_seq as usize]))
    };
    // Per value: the writer (if any) and the readers.
    let mut clusters: BTreeMap<u32, (Option<usize>, Vec<usize>)> = BTreeMap::new();
    let mut zones = Vec::new();
    for (step, spec) in model.steps.iter().enumerate() {
        match (spec.pre, spec.post) {
            (_, Some(JUNK)) => zones.push((span(step).1, span(step).0, vec![step])),
            (_, Some(value)) => clusters.entry(value).or_default().0 = Some(step),
            (Pre::Eq(value), _) => clusters.entry(value).or_default().1.push(step),
            _ => unreachable!("the zone test only sees writes and reads"),
        }
    }
    for (value, (writer, readers)) in &clusters {
        let writer_span = match writer {
            Some(writer) => span(*writer),
            None if *value == ABSENT => (-1, -1),
            None => return Err(vec![readers[0]]),
        };
        let (mut low, mut low_step, mut high, mut high_step) = (writer_span.1, *writer, writer_span.0, *writer);
        for &reader in readers {
            let (start, end) = span(reader);
            if end < writer_span.0 {
                return Err(vec![reader, writer.expect("absent has a virtual writer at -1")]);
            }
            if end < low {
                (low, low_step) = (end, Some(reader));
            }
            if start > high {
                (high, high_step) = (start, Some(reader));
            }
        }
        let witnesses: Vec<usize> = [*writer, low_step, high_step].into_iter().flatten().collect();
        zones.push((low, high, witnesses));
    }
    check_zones(zones.into_iter().map(|(low, high, witnesses)| Zone { low, high, witnesses }).collect())
}

fn check_zones(zones: Vec<Zone>) -> Result<(), Vec<usize>> {
    let (mut forward, backward): (Vec<Zone>, Vec<Zone>) = zones.into_iter().partition(|zone| zone.low < zone.high);
    forward.sort_by_key(|zone| zone.low);
    for pair in forward.windows(2) {
        if pair[0].high > pair[1].low {
            return Err([pair[0].witnesses.clone(), pair[1].witnesses.clone()].concat());
        }
    }
    for zone in &backward {
        // Backward zones run from `high` (latest invoke) to `low` (earliest return).
        let (start, end) = (zone.high, zone.low);
        let before = forward.partition_point(|candidate| candidate.low < start);
        if let Some(outer) = before.checked_sub(1).map(|position| &forward[position])
            && end < outer.high
        {
            return Err([zone.witnesses.clone(), outer.witnesses.clone()].concat());
        }
    }
    Ok(())
}
