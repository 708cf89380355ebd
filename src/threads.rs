//! Thread-count defaults.

/// The number of physical cores this process may use: the distinct (package, core) pairs
/// of `/proc/cpuinfo`, capped by the logical CPUs available to the process. Compute-bound
/// kernels gain nothing from hyper-threads, so this is the default thread count.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let physical = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| count_physical_cores(&text));
    physical.map_or(logical, |p| p.min(logical)).max(1)
}

fn count_physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = std::collections::HashSet::new();
    let mut package = None;
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "physical id" => package = Some(value.trim().to_string()),
            "core id" => {
                cores.insert((package.clone(), value.trim().to_string()));
            }
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperthreads_count_once() {
        let text = "processor: 0\nphysical id: 0\ncore id: 0\n\nprocessor: 1\nphysical id: 0\ncore id: 0\n\n\
                    processor: 2\nphysical id: 0\ncore id: 1\n\nprocessor: 3\nphysical id: 1\ncore id: 0\n";
        assert_eq!(count_physical_cores(text), Some(3));
        assert_eq!(count_physical_cores("processor: 0\n"), None);
        assert!(physical_cores() >= 1);
    }
}
