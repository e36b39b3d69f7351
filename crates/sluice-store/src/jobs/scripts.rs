//! How a batch of jobs goes to the job scripts (`lua/`): the arguments
//! they take, the answers they give, and the groups one call may take.

use sluice_core::job::StartOutcome;

use super::codec::parse_attempts;
use crate::StoreError;

/// Jobs per script call: a batch's jobs change in one call, but no call
/// holds Redis (which runs one script at a time) for long.
const SCRIPT_JOBS: usize = 128;

/// Appends a record's fields as the scripts take them: their count, then
/// each name and value.
pub(super) fn push_fields(args: &mut Vec<String>, fields: Vec<(String, String)>) {
    args.push(fields.len().to_string());
    for (name, value) in fields {
        args.push(name);
        args.push(value);
    }
}

pub(super) fn check_len(script: &str, asked: usize, answered: usize) -> Result<(), StoreError> {
    if asked == answered {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "the {script} script answered for {answered} jobs, not {asked}"
        )))
    }
}

/// One answer of the start script.
pub(super) fn parse_start(answer: &str) -> Result<StartOutcome, StoreError> {
    match answer.split_once(':') {
        Some(("started", rest)) => {
            let (attempt, sent) = rest.split_once(':').unwrap_or((rest, ""));
            Ok(StartOutcome::Started {
                attempt: attempt.parse().map_err(|e| {
                    StoreError::Corrupt(format!("the start script answered {answer:?}: {e}"))
                })?,
                sent_before: parse_attempts(sent)?,
            })
        }
        Some(("done", status)) => Ok(StartOutcome::AlreadyDone(
            status.parse().map_err(StoreError::Corrupt)?,
        )),
        None if answer == "expired" => Ok(StartOutcome::Expired),
        None if answer == "missing" => Ok(StartOutcome::Missing),
        _ => Err(StoreError::Corrupt(format!(
            "the start script answered {answer:?}"
        ))),
    }
}

/// The positions of `keys` in the groups one script call takes: at most
/// [`SCRIPT_JOBS`] each and, on a cluster, all in one slot.
pub(super) fn script_groups(keys: &[String], clustered: bool) -> Vec<Vec<usize>> {
    if !clustered {
        let all: Vec<usize> = (0..keys.len()).collect();
        return all.chunks(SCRIPT_JOBS).map(<[usize]>::to_vec).collect();
    }
    let mut slots: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
    for (i, key) in keys.iter().enumerate() {
        slots
            .entry(fred::util::redis_keyslot(key.as_bytes()))
            .or_default()
            .push(i);
    }
    slots
        .into_values()
        .flat_map(|group| {
            group
                .chunks(SCRIPT_JOBS)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::JobId;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|_| format!("p:job:{{{}}}", JobId::new()))
            .collect()
    }

    /// Every position once, in groups no larger than a script call takes.
    fn assert_partition(groups: &[Vec<usize>], n: usize) {
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert!(groups
            .iter()
            .all(|g| !g.is_empty() && g.len() <= SCRIPT_JOBS));
    }

    #[test]
    fn one_server_takes_a_batch_in_as_few_calls_as_fit() {
        let keys = keys(300);
        let groups = script_groups(&keys, false);
        assert_partition(&groups, 300);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0], (0..SCRIPT_JOBS).collect::<Vec<_>>());
    }

    #[test]
    fn a_cluster_call_touches_one_slot() {
        // Jobs of one slot share a call; the ids' hash tags spread the rest.
        let mut keys = keys(200);
        let twin = keys[0].clone();
        keys.push(twin);
        let groups = script_groups(&keys, true);
        assert_partition(&groups, 201);
        for group in &groups {
            let slot = fred::util::redis_keyslot(keys[group[0]].as_bytes());
            assert!(group
                .iter()
                .all(|&i| fred::util::redis_keyslot(keys[i].as_bytes()) == slot));
        }
        assert!(groups.iter().any(|g| g.contains(&0) && g.contains(&200)));
        assert!(groups.len() > 100, "{} groups", groups.len());
    }
}
