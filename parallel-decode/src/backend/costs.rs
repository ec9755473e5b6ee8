//! What a pass of each verify bucket costs, learned while decoding.
//!
//! The costs measured when a model opens are a few passes on a machine whose other work comes
//! and goes; a burst during that measurement can make a bucket look 40% dearer than it is,
//! and a proposer that trusts it stops speculating for the rest of the run. So every pass
//! the model runs for one row updates its bucket's estimate (an exponentially weighted
//! average, with each observation clamped to a band around the estimate so that one
//! descheduled pass moves it little), and the relative costs that proposers read follow.
//! A bucket that is never used keeps its measured cost; when a proposer backs off, its
//! occasional probes refresh the wider buckets.

/// Weight of a new observation in a bucket's estimate.
const WEIGHT: f64 = 0.1;
/// An observation counts as at most this many times the estimate (and at least its inverse).
const BAND: f64 = 2.0;

/// Estimated cost of a pass of each bucket and of a run of the heads, kept as ratios to a
/// decode step (whose own time is tracked by the decode passes, the most frequent).
///
/// Why ratios: other work on the machine slows every pass alike. Wide passes run only when
/// proposers think they pay, so an estimate in seconds taken during a burst of load stayed
/// inflated after it: proposers shrank their trees, the wide buckets stopped running and were
/// never corrected (a benchmark run while the project compiled decoded at tau 1.27 instead of
/// 2.09 for the rest of the run). A wide pass timed during the burst is divided by a decode
/// step's time during the same burst, and its ratio stays about right.
#[derive(Debug, Clone, PartialEq)]
pub struct PassCosts {
    /// Bucket widths, ascending; the first is the one-node (decode) bucket.
    widths: Vec<usize>,
    /// Seconds per decode step, as the machine runs them now.
    one: f64,
    /// Each bucket's cost over a decode step's (the first is 1).
    ratios: Vec<f64>,
    /// A run of the heads over a decode step (`None`: no heads).
    heads: Option<f64>,
}

impl PassCosts {
    /// Starts from measured seconds per bucket (`widths` ascending, one entry each) and per
    /// heads run.
    ///
    /// # Panics
    /// If `widths` and `seconds` differ in length or are empty (a caller bug).
    pub fn new(widths: Vec<usize>, seconds: Vec<f64>, heads: Option<f64>) -> Self {
        assert!(!widths.is_empty() && widths.len() == seconds.len());
        let one = if seconds[0].is_finite() && seconds[0] > 0.0 {
            seconds[0]
        } else {
            1e-3
        };
        PassCosts {
            widths,
            one,
            ratios: seconds.iter().map(|s| s / one).collect(),
            heads: heads.map(|h| h / one),
        }
    }

    /// Records that a pass of bucket `bucket` (an index into the widths) took `seconds`.
    pub fn observe_pass(&mut self, bucket: usize, seconds: f64) {
        match bucket {
            0 => update(&mut self.one, seconds),
            b => {
                if let Some(ratio) = self.ratios.get_mut(b) {
                    update(ratio, seconds / self.one);
                }
            }
        }
    }

    /// Records that a run of the heads took `seconds`.
    pub fn observe_heads(&mut self, seconds: f64) {
        if let Some(ratio) = &mut self.heads {
            update(ratio, seconds / self.one);
        }
    }

    /// The costs relative to a one-node pass: entry `n - 1` is the cost of `n` nodes (the
    /// smallest bucket holding them), for `n` up to `max_tree`; and the heads' cost. A wider
    /// pass does at least the work of a narrower one, so an estimate that says otherwise is
    /// raised to its narrower neighbour's (and none is below a decode step).
    pub fn relative(&self, max_tree: usize) -> (Vec<f32>, f32) {
        let mut monotone = self.ratios.clone();
        monotone[0] = 1.0;
        for i in 1..monotone.len() {
            monotone[i] = monotone[i].max(monotone[i - 1]);
        }
        let tree = (1..=max_tree)
            .map(|n| {
                let b = self
                    .widths
                    .iter()
                    .position(|&w| w >= n)
                    .unwrap_or(self.widths.len() - 1);
                monotone[b] as f32
            })
            .collect();
        (tree, self.heads.unwrap_or(0.0) as f32)
    }
}

fn update(estimate: &mut f64, observed: f64) {
    if !observed.is_finite() || observed <= 0.0 {
        return;
    }
    let clamped = observed.clamp(*estimate / BAND, *estimate * BAND);
    *estimate += WEIGHT * (clamped - *estimate);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_costs_expand_buckets_to_node_counts_and_stay_monotone() {
        // The 4-wide bucket measured cheaper than decode: noise, raised to 1.
        let costs = PassCosts::new(vec![1, 4, 8], vec![0.020, 0.018, 0.030], Some(0.002));
        let (tree, heads) = costs.relative(8);
        assert_eq!(tree, vec![1.0, 1.0, 1.0, 1.0, 1.5, 1.5, 1.5, 1.5]);
        assert!((heads - 0.1).abs() < 1e-6);
    }

    #[test]
    fn a_bucket_measured_too_dear_comes_down_as_passes_run() {
        // Measured during a burst: the 4-wide pass looks 1.6x a decode step; it costs 1.1x.
        let mut costs = PassCosts::new(vec![1, 4], vec![0.020, 0.032], None);
        for _ in 0..40 {
            costs.observe_pass(0, 0.020);
            costs.observe_pass(1, 0.022);
        }
        let (tree, _) = costs.relative(4);
        assert!((tree[3] - 1.1).abs() < 0.02, "{tree:?}");
    }

    #[test]
    fn one_stalled_pass_moves_the_estimate_little() {
        let mut costs = PassCosts::new(vec![1, 4], vec![0.020, 0.022], Some(0.001));
        costs.observe_pass(0, 5.0);
        costs.observe_pass(1, f64::NAN);
        costs.observe_heads(-1.0);
        // At most WEIGHT of a doubling: 10% dearer.
        assert!((costs.one - 0.022).abs() < 1e-12);
        assert!((costs.ratios[1] - 1.1).abs() < 1e-12);
        assert!((costs.heads.unwrap() - 0.05).abs() < 1e-12);
    }

    #[test]
    fn a_burst_of_load_does_not_leave_the_wide_passes_looking_dear() {
        // A wide pass costs 1.5x a decode step. During a burst everything runs 1.8x slower;
        // afterwards the wide passes stop running (as when proposers back off).
        let mut costs = PassCosts::new(vec![1, 8], vec![0.020, 0.030], Some(0.002));
        for _ in 0..30 {
            costs.observe_pass(0, 0.036);
            costs.observe_pass(1, 0.054);
            costs.observe_heads(0.0036);
        }
        for _ in 0..30 {
            costs.observe_pass(0, 0.020);
        }
        let (tree, heads) = costs.relative(8);
        assert!((tree[7] - 1.5).abs() < 0.1, "{tree:?}");
        assert!((heads - 0.1).abs() < 0.01, "{heads}");
    }

    #[test]
    fn without_heads_their_cost_is_zero_and_stays_so() {
        let mut costs = PassCosts::new(vec![1], vec![0.01], None);
        costs.observe_heads(0.5);
        assert_eq!(costs.relative(1), (vec![1.0], 0.0));
    }
}
