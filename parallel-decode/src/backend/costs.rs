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

/// Estimated seconds per pass of each bucket, and per run of the heads.
#[derive(Debug, Clone, PartialEq)]
pub struct PassCosts {
    /// Bucket widths, ascending; the first is the one-node (decode) bucket.
    widths: Vec<usize>,
    /// Seconds per pass of each bucket.
    seconds: Vec<f64>,
    /// Seconds per run of the heads (`None`: no heads).
    heads: Option<f64>,
}

impl PassCosts {
    /// Starts from measured seconds per bucket (`widths` ascending, one entry each) and per
    /// heads run. A wider pass does at least the work of a narrower one, so a measurement
    /// that says otherwise is raised to its narrower neighbour's.
    ///
    /// # Panics
    /// If `widths` and `seconds` differ in length or are empty (a caller bug).
    pub fn new(widths: Vec<usize>, seconds: Vec<f64>, heads: Option<f64>) -> Self {
        assert!(!widths.is_empty() && widths.len() == seconds.len());
        PassCosts {
            widths,
            seconds,
            heads,
        }
    }

    /// Records that a pass of bucket `bucket` (an index into the widths) took `seconds`.
    pub fn observe_pass(&mut self, bucket: usize, seconds: f64) {
        if let Some(estimate) = self.seconds.get_mut(bucket) {
            update(estimate, seconds);
        }
    }

    /// Records that a run of the heads took `seconds`.
    pub fn observe_heads(&mut self, seconds: f64) {
        if let Some(estimate) = &mut self.heads {
            update(estimate, seconds);
        }
    }

    /// The costs relative to a one-node pass: entry `n - 1` is the cost of `n` nodes (the
    /// smallest bucket holding them), for `n` up to `max_tree`; and the heads' cost.
    pub fn relative(&self, max_tree: usize) -> (Vec<f32>, f32) {
        let mut monotone = self.seconds.clone();
        for i in 1..monotone.len() {
            monotone[i] = monotone[i].max(monotone[i - 1]);
        }
        let one = monotone[0].max(1e-12);
        let tree = (1..=max_tree)
            .map(|n| {
                let b = self
                    .widths
                    .iter()
                    .position(|&w| w >= n)
                    .unwrap_or(self.widths.len() - 1);
                (monotone[b] / one).max(1.0) as f32
            })
            .collect();
        let heads = self.heads.map_or(0.0, |h| (h / one) as f32);
        (tree, heads)
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
        assert!((costs.seconds[0] - 0.022).abs() < 1e-12);
        assert_eq!(costs.seconds[1], 0.022);
        assert_eq!(costs.heads, Some(0.001));
    }

    #[test]
    fn without_heads_their_cost_is_zero_and_stays_so() {
        let mut costs = PassCosts::new(vec![1], vec![0.01], None);
        costs.observe_heads(0.5);
        assert_eq!(costs.relative(1), (vec![1.0], 0.0));
    }
}
