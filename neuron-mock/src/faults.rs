//! Fault injection: `NEURON_MOCK_FAULTS`, read at `nrt_init`.
//!
//! Rules are separated by `;` or `,`:
//!
//! | rule | effect |
//! |---|---|
//! | `exec-fail=N[@STATUS]` | the Nth execution since `nrt_init` fails with STATUS |
//! | `exec-fail-every=N[@STATUS]` | every Nth execution fails |
//! | `exec-fail-from=N[@STATUS]` | every execution from the Nth on fails |
//! | `exec-delay=DURATION` | every execution waits DURATION before running (`250us`, `20ms`, `1.5s`) |
//! | `load-fail=N[@STATUS]` | the Nth model load since `nrt_init` fails with STATUS |
//! | `alloc-fail-after=BYTES` | once tensor allocations since `nrt_init` total BYTES, every further allocation fails with `NRT_RESOURCE` (`K`, `M`, `G` suffixes are binary multiples) |
//!
//! Executions are counted over the whole process, 1-based: every call of `nrt_execute` or
//! `nrt_execute_repeat` (after its arguments have been checked) is one execution, whichever
//! model or thread makes it. STATUS is a status name (`NRT_EXEC_NC_BUSY`, `EXEC_NC_BUSY`,
//! case-insensitive) or number (`1005`); the default is `NRT_EXEC_COMPLETED_WITH_ERR` for
//! executions and `NRT_FAILURE` for loads. An injected failure skips the kernel, so outputs are
//! left as they were. Example: `NEURON_MOCK_FAULTS="exec-fail=3@NRT_TIMEOUT;exec-delay=5ms"`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use neuron_sys::bindings::NRT_STATUS;

/// Which executions (or loads) a rule hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hits {
    Nth(u64),
    Every(u64),
    From(u64),
}

impl Hits {
    fn matches(self, count: u64) -> bool {
        match self {
            Hits::Nth(n) => count == n,
            Hits::Every(n) => count.is_multiple_of(n),
            Hits::From(n) => count >= n,
        }
    }
}

/// The parsed rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FaultPlan {
    exec_fail: Vec<(Hits, NRT_STATUS)>,
    load_fail: Vec<(Hits, NRT_STATUS)>,
    exec_delay: Option<Duration>,
    alloc_fail_after: Option<u64>,
}

/// A malformed `NEURON_MOCK_FAULTS` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FaultSyntaxError {
    rule: String,
    why: String,
}

impl fmt::Display for FaultSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {:?}: {}; rules are exec-fail=N[@STATUS], exec-fail-every=N[@STATUS], \
             exec-fail-from=N[@STATUS], exec-delay=DURATION, load-fail=N[@STATUS], \
             alloc-fail-after=BYTES, separated by ';'",
            self.rule, self.why
        )
    }
}

impl FaultPlan {
    pub(crate) fn parse(text: &str) -> Result<FaultPlan, FaultSyntaxError> {
        let mut plan = FaultPlan::default();
        for rule in text
            .split([';', ','])
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            let err = |why: String| FaultSyntaxError {
                rule: rule.to_string(),
                why,
            };
            let (key, value) = rule
                .split_once('=')
                .ok_or_else(|| err("expected NAME=VALUE".into()))?;
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "exec-fail" | "exec-fail-every" | "exec-fail-from" | "load-fail" => {
                    let (count, status) = match value.split_once('@') {
                        Some((n, s)) => (n.trim(), Some(s.trim())),
                        None => (value, None),
                    };
                    let n: u64 = count
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| err(format!("{count:?} is not a count of 1 or more")))?;
                    let hits = match key.as_str() {
                        "exec-fail-every" => Hits::Every(n),
                        "exec-fail-from" => Hits::From(n),
                        _ => Hits::Nth(n),
                    };
                    let (list, default) = if key == "load-fail" {
                        (&mut plan.load_fail, NRT_STATUS::NRT_FAILURE)
                    } else {
                        (&mut plan.exec_fail, NRT_STATUS::NRT_EXEC_COMPLETED_WITH_ERR)
                    };
                    let status = match status {
                        None => default,
                        Some(s) => parse_status(s)
                            .ok_or_else(|| err(format!("{s:?} is not a status name or number")))?,
                    };
                    list.push((hits, status));
                }
                "exec-delay" => {
                    plan.exec_delay =
                        Some(parse_duration(value).ok_or_else(|| {
                            err(format!("{value:?} is not a duration like 20ms"))
                        })?);
                }
                "alloc-fail-after" => {
                    plan.alloc_fail_after =
                        Some(parse_bytes(value).ok_or_else(|| {
                            err(format!("{value:?} is not a byte count like 64M"))
                        })?);
                }
                other => return Err(err(format!("unknown rule {other:?}"))),
            }
        }
        Ok(plan)
    }

    /// Whether any rule is set.
    pub(crate) fn is_empty(&self) -> bool {
        *self == FaultPlan::default()
    }
}

/// A status by name (with or without `NRT_`, any case) or number.
pub(crate) fn parse_status(text: &str) -> Option<NRT_STATUS> {
    if let Ok(n) = text.parse::<u32>() {
        return Some(NRT_STATUS(n));
    }
    let upper = text.to_ascii_uppercase();
    let wanted = if upper.starts_with("NRT_") {
        upper
    } else {
        format!("NRT_{upper}")
    };
    (0..2000)
        .map(NRT_STATUS)
        .find(|s| s.name() == Some(wanted.as_str()))
}

fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let seconds = match unit.trim() {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        _ => return None,
    };
    (0.0..1e6)
        .contains(&seconds)
        .then(|| Duration::from_secs_f64(seconds))
}

fn parse_bytes(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.trim().parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale)
}

/// The plan plus the counters it runs against (one per `nrt_init`).
#[derive(Debug, Default)]
pub(crate) struct Faults {
    plan: FaultPlan,
    executions: AtomicU64,
    loads: AtomicU64,
    allocated: AtomicU64,
}

/// What to do with one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExecFault {
    /// 1-based execution number.
    pub(crate) number: u64,
    pub(crate) delay: Option<Duration>,
    pub(crate) fail: Option<NRT_STATUS>,
}

impl Faults {
    pub(crate) fn new(plan: FaultPlan) -> Faults {
        Faults {
            plan,
            ..Faults::default()
        }
    }

    /// Counts an execution and says whether to delay or fail it.
    pub(crate) fn next_execution(&self) -> ExecFault {
        let number = self.executions.fetch_add(1, Ordering::Relaxed) + 1;
        ExecFault {
            number,
            delay: self.plan.exec_delay,
            fail: first_hit(&self.plan.exec_fail, number),
        }
    }

    /// Counts a model load; `Some(status)` if it must fail.
    pub(crate) fn next_load(&self) -> Option<(u64, NRT_STATUS)> {
        if self.plan.load_fail.is_empty() {
            return None;
        }
        let number = self.loads.fetch_add(1, Ordering::Relaxed) + 1;
        first_hit(&self.plan.load_fail, number).map(|s| (number, s))
    }

    /// Records an allocation of `bytes`; `Err(limit)` if the allocation budget is spent.
    pub(crate) fn allocate(&self, bytes: u64) -> Result<(), u64> {
        let Some(limit) = self.plan.alloc_fail_after else {
            return Ok(());
        };
        let mut current = self.allocated.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(bytes);
            if next > limit {
                return Err(limit);
            }
            match self.allocated.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        !self.plan.is_empty()
    }
}

fn first_hit(rules: &[(Hits, NRT_STATUS)], count: u64) -> Option<NRT_STATUS> {
    rules
        .iter()
        .find(|(hits, _)| hits.matches(count))
        .map(|&(_, status)| status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_rule() {
        let plan = FaultPlan::parse(
            "exec-fail=3@NRT_EXEC_NC_BUSY; exec-fail-every=5@timeout, exec-fail-from=100; \
             exec-delay=1.5ms; load-fail=2@4; alloc-fail-after=64M",
        )
        .unwrap();
        assert_eq!(
            plan.exec_fail,
            vec![
                (Hits::Nth(3), NRT_STATUS::NRT_EXEC_NC_BUSY),
                (Hits::Every(5), NRT_STATUS::NRT_TIMEOUT),
                (Hits::From(100), NRT_STATUS::NRT_EXEC_COMPLETED_WITH_ERR)
            ]
        );
        assert_eq!(plan.exec_delay, Some(Duration::from_micros(1500)));
        assert_eq!(
            plan.load_fail,
            vec![(Hits::Nth(2), NRT_STATUS::NRT_RESOURCE)]
        );
        assert_eq!(plan.alloc_fail_after, Some(64 << 20));
        assert!(FaultPlan::parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_rules_with_the_syntax() {
        for bad in [
            "exec-fail",
            "exec-fail=0",
            "exec-fail=x",
            "exec-fail=2@NRT_NO_SUCH",
            "exec-delay=5 parsecs",
            "alloc-fail-after=lots",
            "explode=1",
        ] {
            let err = FaultPlan::parse(bad).unwrap_err().to_string();
            assert!(err.contains("exec-fail=N[@STATUS]"), "{bad}: {err}");
        }
    }

    #[test]
    fn counters() {
        let faults = Faults::new(FaultPlan::parse("exec-fail=2@1005;alloc-fail-after=10").unwrap());
        assert_eq!(faults.next_execution().fail, None);
        assert_eq!(
            faults.next_execution().fail,
            Some(NRT_STATUS::NRT_EXEC_NC_BUSY)
        );
        assert_eq!(faults.next_execution().fail, None);
        assert_eq!(faults.allocate(6), Ok(()));
        assert_eq!(faults.allocate(4), Ok(()));
        assert_eq!(faults.allocate(1), Err(10));
        assert_eq!(faults.next_load(), None);
    }
}
