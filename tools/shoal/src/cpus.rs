//! Which core each shard executor is pinned to (`shoal node --cpus`).
//!
//! glommio's `Placement::Fixed(cpu)` names an absolute CPU id and replaces the thread's
//! affinity mask with it. Pinning shard `i` to CPU `i`, as nodes did before, therefore ignored
//! the mask an operator gave the process (`taskset`, systemd's `CPUAffinity=`,
//! kernel-notes/cpu-placement.md): a node told to use cores 4-7 ran its shards on 0-3. And
//! every node of `shoal dev` (several nodes on one machine) pinned its shard 0 to CPU 0, so a
//! partition's three replicas, one per node, all ran on one core.
//!
//! Now shard `i` goes to the `i`-th CPU of a list: the one `--cpus` gives (it must have a CPU
//! for every shard), or by default the process's own affinity mask. With more shards than
//! CPUs in the mask, with a mask that cannot be read, or with `--cpus none`, the executors are
//! left unpinned and the kernel places them.
//!
//! The mask is not the CPU quota: a container limited to 2 CPUs of quota but allowed on 16
//! pins its shards to the first CPUs of its mask. Give such a node `--cpus none`, or a mask
//! (cpuset) of its own.

use std::collections::BTreeSet;

use glommio::Placement;

/// The highest CPU id a list may name: the kernel's own upper bound on configurable CPUs
/// (`CONFIG_NR_CPUS` is at most 8192). A larger number is a typo, not a machine.
pub const CPU_ID_MAX: usize = 8191;

/// What `--cpus` (or the config file's `cpus` key) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuChoice {
    /// Pin to the process's affinity mask, when it has a CPU for every shard (the default).
    Allowed,
    /// Leave every shard unpinned.
    Unpinned,
    /// Pin shard `i` to the `i`-th CPU listed.
    Listed(Vec<usize>),
}

/// Parses `none`, `allowed`, or a Linux CPU list (`0-3,8,10-11`: ids and inclusive ranges,
/// in the order the shards take them; no id twice).
pub fn parse_cpu_choice(text: &str) -> Result<CpuChoice, String> {
    let text = text.trim();
    match text {
        "none" => return Ok(CpuChoice::Unpinned),
        "allowed" => return Ok(CpuChoice::Allowed),
        _ => {}
    }
    let mut cpus = Vec::new();
    let mut seen = BTreeSet::new();
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (parse_cpu_id(first)?, parse_cpu_id(last)?),
            None => {
                let cpu = parse_cpu_id(part)?;
                (cpu, cpu)
            }
        };
        if first > last {
            return Err(format!("CPU range {part} runs backwards"));
        }
        for cpu in first..=last {
            if !seen.insert(cpu) {
                return Err(format!("CPU {cpu} is listed twice"));
            }
            cpus.push(cpu);
        }
    }
    Ok(CpuChoice::Listed(cpus))
}

fn parse_cpu_id(text: &str) -> Result<usize, String> {
    let cpu: usize = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a CPU id (expected none, allowed, or a list like 0-3,8)")
    })?;
    if cpu > CPU_ID_MAX {
        return Err(format!("CPU {cpu} is above {CPU_ID_MAX}"));
    }
    Ok(cpu)
}

/// The CPUs this process may run on, in ascending order (`sched_getaffinity`).
pub fn allowed_cpus() -> Result<Vec<usize>, String> {
    let mask = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map_err(|error| format!("cannot read this process's CPU affinity: {error}"))?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&cpu| mask.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Each shard's placement for `choice`, given the CPUs the process may use. A listed CPU
/// outside them is refused: pinning there would override the operator's mask (or fail in a
/// cgroup's cpuset).
pub fn shard_placements(
    choice: &CpuChoice,
    shards: u16,
    allowed: &Result<Vec<usize>, String>,
) -> Result<Vec<Placement>, String> {
    let shards = usize::from(shards);
    let unpinned = || (0..shards).map(|_| Placement::Unbound).collect();
    let allowed = match (choice, allowed) {
        (CpuChoice::Unpinned, _) => return Ok(unpinned()),
        (_, Ok(allowed)) => allowed.as_slice(),
        // Without a readable mask (`sched_getaffinity` refuses a fixed-size set on a host with
        // more possible CPUs than it holds) nothing is pinned by default, and a list cannot be
        // checked.
        (CpuChoice::Allowed, Err(_)) => return Ok(unpinned()),
        (CpuChoice::Listed(_), Err(error)) => return Err(error.clone()),
    };
    let cpus: &[usize] = match choice {
        CpuChoice::Unpinned => unreachable!("answered above"),
        CpuChoice::Allowed => {
            if allowed.len() < shards {
                return Ok(unpinned());
            }
            allowed
        }
        CpuChoice::Listed(listed) => {
            if let Some(cpu) = listed.iter().find(|cpu| !allowed.contains(cpu)) {
                return Err(format!(
                    "--cpus names CPU {cpu}, which this process may not use (allowed: {})",
                    format_cpu_list(allowed)
                ));
            }
            if listed.len() < shards {
                return Err(format!(
                    "--cpus lists {} CPUs for {shards} shards: list one per shard, or none",
                    listed.len()
                ));
            }
            listed
        }
    };
    Ok(cpus[..shards]
        .iter()
        .map(|&cpu| Placement::Fixed(cpu))
        .collect())
}

/// `cpus` as a Linux CPU list, ranges folded (`0-3,8`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut index = 0;
    while index < cpus.len() {
        let first = cpus[index];
        let mut last = first;
        while index + 1 < cpus.len() && cpus[index + 1] == last + 1 {
            index += 1;
            last = cpus[index];
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        index += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(placements: &[Placement]) -> Vec<Option<usize>> {
        placements
            .iter()
            .map(|placement| match placement {
                Placement::Fixed(cpu) => Some(*cpu),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lists_parse_in_order_with_ranges() {
        assert_eq!(
            parse_cpu_choice("4-6, 1,9").unwrap(),
            CpuChoice::Listed(vec![4, 5, 6, 1, 9])
        );
        assert_eq!(parse_cpu_choice("none").unwrap(), CpuChoice::Unpinned);
        assert_eq!(parse_cpu_choice("allowed").unwrap(), CpuChoice::Allowed);
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        assert!(parse_cpu_choice("3-1").unwrap_err().contains("backwards"));
        assert!(parse_cpu_choice("1,0-2").unwrap_err().contains("twice"));
        assert!(parse_cpu_choice("x").unwrap_err().contains("not a CPU id"));
        assert!(parse_cpu_choice("").unwrap_err().contains("not a CPU id"));
        assert!(parse_cpu_choice("9000").unwrap_err().contains("above"));
    }

    #[test]
    fn the_default_follows_the_affinity_mask_not_absolute_ids() {
        // A node started under `taskset -c 4-7` with 2 shards runs on 4 and 5, not on 0 and 1.
        let placements = shard_placements(&CpuChoice::Allowed, 2, &Ok(vec![4, 5, 6, 7])).unwrap();
        assert_eq!(fixed(&placements), vec![Some(4), Some(5)]);
        // More shards than allowed CPUs: unpinned, as before.
        let placements = shard_placements(&CpuChoice::Allowed, 3, &Ok(vec![0, 1])).unwrap();
        assert_eq!(fixed(&placements), vec![None, None, None]);
    }

    #[test]
    fn a_list_must_cover_every_shard_within_the_mask() {
        let placements =
            shard_placements(&CpuChoice::Listed(vec![3, 1]), 2, &Ok(vec![0, 1, 2, 3])).unwrap();
        assert_eq!(fixed(&placements), vec![Some(3), Some(1)]);
        let outside =
            shard_placements(&CpuChoice::Listed(vec![5]), 1, &Ok(vec![0, 1])).unwrap_err();
        assert!(
            outside.contains("CPU 5") && outside.contains("0-1"),
            "{outside}"
        );
        let short = shard_placements(&CpuChoice::Listed(vec![0]), 2, &Ok(vec![0, 1])).unwrap_err();
        assert!(short.contains("1 CPUs for 2 shards"), "{short}");
        let unpinned = shard_placements(&CpuChoice::Unpinned, 2, &Ok(vec![0, 1])).unwrap();
        assert_eq!(fixed(&unpinned), vec![None, None]);
        // A mask that cannot be read pins nothing by default and refuses only a list.
        let unreadable = Err("EINVAL".to_string());
        let unpinned = shard_placements(&CpuChoice::Allowed, 2, &unreadable).unwrap();
        assert_eq!(fixed(&unpinned), vec![None, None]);
        let unpinned = shard_placements(&CpuChoice::Unpinned, 2, &unreadable).unwrap();
        assert_eq!(fixed(&unpinned), vec![None, None]);
        assert!(shard_placements(&CpuChoice::Listed(vec![0]), 1, &unreadable).is_err());
    }

    #[test]
    fn cpu_lists_fold_ranges() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[5]), "5");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn this_process_may_use_at_least_one_cpu() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        assert!(allowed.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
