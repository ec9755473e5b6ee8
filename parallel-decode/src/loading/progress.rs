//! Progress reporting for long steps (downloads, hashing, imports), without tying the library
//! to a terminal: the CLI plugs in progress bars, library users may plug in anything or
//! [`NoProgress`].

/// What a step's count measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (shown as MiB/GiB).
    Bytes,
    /// Items such as tensors.
    Items,
}

/// Receives progress of long-running steps.
pub trait Progress: Sync {
    /// A step starts; `total` is known for counted steps and `None` for ones that can only say
    /// they are still running (such as a `pip` download).
    fn start(&self, label: &str, total: Option<u64>, unit: Unit) -> Box<dyn ProgressStep + '_>;
}

/// One running step. Dropping it ends the step.
pub trait ProgressStep {
    /// `n` more units are done.
    fn advance(&self, n: u64);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

struct NoStep;

impl ProgressStep for NoStep {
    fn advance(&self, _n: u64) {}
}

impl Progress for NoProgress {
    fn start(&self, _label: &str, _total: Option<u64>, _unit: Unit) -> Box<dyn ProgressStep + '_> {
        Box::new(NoStep)
    }
}
