//! What a pass of each verify bucket costs, learned while decoding.
//!
//! The costs measured when a model opens are a few passes on a machine whose other work comes
//! and goes; a burst during that measurement can make a bucket look 40% dearer than it is,
//! and a proposer that trusts it stops speculating for the rest of the run. So every pass
//! the model runs for one row updates its bucket's estimate (an exponentially weighted
//! average, with each observation clamped to a band around the estimate so that one
//! descheduled pass moves it little), and the relative costs that proposers read follow.
//!
//! That alone can trap itself, and did (hybrid decoding on the open benchmark prompts, with a
//! 40-second burst of load early in the run, averaged tau 1.43 where these rules give 2.17;
//! a run during a build, 1.27 instead of 2.09): passes timed during a burst leave their
//! buckets looking dear, proposers stop building trees that need them, they no longer run,
//! and the inflated estimates stay.
//! Three rules keep a stale estimate from doing harm:
//!
//! - A pass may run in any bucket that holds it (padded, same tokens, same results), so `n`
//!   nodes cost what the **cheapest** bucket holding them costs, and a speculative pass runs
//!   there ([`PassCosts::bucket_to_run`]). A narrow bucket that looks dearer than a wider one
//!   is simply not used; it no longer raises the cost of every wider tree, as the old rule
//!   (each bucket at least its narrower neighbour) made it do.
//! - A bucket that has not run for [`MIN_INTERVAL`] passes is **probed**: the next
//!   speculative pass it could hold runs in it, if it is no wider than one bucket above the
//!   cheapest (so a probe costs little more than the pass it replaces), and a probe's
//!   observation counts more. Probes back off: each one that finds the estimate right doubles
//!   that bucket's interval, up to [`MAX_INTERVAL`] passes.
//! - A bucket unchecked for its interval and more than one above the bucket just run (so
//!   beyond a probe's reach) **drifts** back toward its start-up cost, scaled as the bucket
//!   just run has moved from its own: the shape of the curve measured at start-up, at the
//!   machine's present speed. That reaches the wide buckets once the trees have shrunk,
//!   and never touches the decode bucket, by which every cost is divided.

/// Weight of a new observation in a bucket's estimate.
const WEIGHT: f64 = 0.1;
/// Weight of an observation of a bucket that had gone unchecked for its probe interval.
const PROBE_WEIGHT: f64 = 0.5;
/// An observation counts as at most this many times the estimate (and at least its inverse).
const BAND: f64 = 2.0;
/// Passes of other buckets after which a bucket is probed at first, and again whenever a
/// probe found its estimate wrong.
pub const MIN_INTERVAL: u32 = 32;
/// The longest a bucket goes unprobed once its probes keep finding the estimate right.
pub const MAX_INTERVAL: u32 = 1024;
/// A probe within this fraction of the estimate finds it right.
const AGREES: f64 = 0.1;
/// Per pass, how much of the way an unchecked bucket's estimate moves toward its scaled
/// start-up cost.
const DRIFT: f64 = 0.05;

/// Estimated seconds per pass of each bucket, and per run of the heads.
#[derive(Debug, Clone, PartialEq)]
pub struct PassCosts {
    /// Bucket widths, ascending; the first is the one-node (decode) bucket.
    widths: Vec<usize>,
    /// Seconds per pass of each bucket.
    seconds: Vec<f64>,
    /// Seconds per pass of each bucket as measured at start-up.
    started: Vec<f64>,
    /// Seconds per run of the heads (`None`: no heads).
    heads: Option<f64>,
    /// One-row passes since each bucket last ran.
    since: Vec<u32>,
    /// Passes after which each bucket is probed.
    interval: Vec<u32>,
}

impl PassCosts {
    /// Starts from measured seconds per bucket (`widths` ascending, one entry each) and per
    /// heads run.
    ///
    /// # Panics
    /// If `widths` and `seconds` differ in length or are empty (a caller bug).
    pub fn new(widths: Vec<usize>, seconds: Vec<f64>, heads: Option<f64>) -> Self {
        assert!(!widths.is_empty() && widths.len() == seconds.len());
        let buckets = widths.len();
        PassCosts {
            widths,
            started: seconds.clone(),
            seconds,
            heads,
            since: vec![0; buckets],
            interval: vec![MIN_INTERVAL; buckets],
        }
    }

    /// The bucket a one-row speculative pass should run in, `fits` being the narrowest that
    /// holds it: the narrowest bucket due for a probe from `fits` up to one above the
    /// cheapest holding it, else the cheapest (the narrowest of equals).
    pub fn bucket_to_run(&self, fits: usize) -> usize {
        let last = self.widths.len() - 1;
        let fits = fits.min(last);
        let cheapest = (fits..=last)
            .min_by(|&a, &b| self.seconds[a].total_cmp(&self.seconds[b]))
            .unwrap_or(fits);
        (fits..=(cheapest + 1).min(last))
            .find(|&b| self.due(b))
            .unwrap_or(cheapest)
    }

    /// Whether bucket `b` has gone unchecked for its probe interval.
    fn due(&self, b: usize) -> bool {
        self.since[b] >= self.interval[b]
    }

    /// Records that a one-row pass of bucket `bucket` (an index into the widths) took
    /// `seconds`.
    pub fn observe_pass(&mut self, bucket: usize, seconds: f64) {
        if bucket >= self.widths.len() {
            return;
        }
        if self.due(bucket) {
            let before = self.seconds[bucket];
            let moved = update(&mut self.seconds[bucket], seconds, PROBE_WEIGHT);
            self.interval[bucket] = if moved.is_some_and(|m| m <= AGREES * before) {
                (self.interval[bucket] * 2).min(MAX_INTERVAL)
            } else {
                MIN_INTERVAL
            };
        } else {
            update(&mut self.seconds[bucket], seconds, WEIGHT);
        }
        for since in &mut self.since {
            *since = since.saturating_add(1);
        }
        self.since[bucket] = 0;
        let scale = self.seconds[bucket] / self.started[bucket].max(1e-12);
        for b in bucket + 2..self.widths.len() {
            if self.due(b) {
                let target = self.started[b] * scale;
                self.seconds[b] += DRIFT * (target - self.seconds[b]);
            }
        }
    }

    /// Records that a run of the heads took `seconds`.
    pub fn observe_heads(&mut self, seconds: f64) {
        if let Some(estimate) = &mut self.heads {
            update(estimate, seconds, WEIGHT);
        }
    }

    /// The costs relative to a one-node pass: entry `n - 1` is the cost of `n` nodes (the
    /// cheapest bucket holding them; a one-node pass always runs in the narrowest), for `n`
    /// up to `max_tree`; and the heads' cost.
    pub fn relative(&self, max_tree: usize) -> (Vec<f32>, f32) {
        // cheapest[b]: the least estimate of bucket b and every wider one.
        let mut cheapest = self.seconds.clone();
        for b in (0..cheapest.len() - 1).rev() {
            cheapest[b] = cheapest[b].min(cheapest[b + 1]);
        }
        let one = self.seconds[0].max(1e-12);
        let tree = (1..=max_tree)
            .map(|n| {
                if n == 1 {
                    return 1.0;
                }
                let b = self
                    .widths
                    .iter()
                    .position(|&w| w >= n)
                    .unwrap_or(self.widths.len() - 1);
                (cheapest[b] / one).max(1.0) as f32
            })
            .collect();
        let heads = self.heads.map_or(0.0, |h| (h / one) as f32);
        (tree, heads)
    }
}

/// Moves `estimate` by `weight` of the way to `observed` (clamped to the band); returns how
/// far the clamped observation was from the estimate, or `None` for a meaningless one.
fn update(estimate: &mut f64, observed: f64, weight: f64) -> Option<f64> {
    if !observed.is_finite() || observed <= 0.0 {
        return None;
    }
    let clamped = observed.clamp(*estimate / BAND, *estimate * BAND);
    let gap = clamped - *estimate;
    *estimate += weight * gap;
    Some(gap.abs())
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
    fn a_narrow_bucket_that_looks_dear_does_not_raise_the_wider_ones() {
        // The 2-wide bucket was timed during a burst and has not run since (the estimates of
        // the trap above, in milliseconds).
        let costs = PassCosts::new(vec![1, 2, 3, 4], vec![0.030, 0.056, 0.039, 0.045], None);
        let (tree, _) = costs.relative(4);
        assert_eq!(tree, vec![1.0, 1.3, 1.3, 1.5]);
        // Two-node trees run in the 3-wide bucket, wider ones in the narrowest holding them.
        assert_eq!(costs.bucket_to_run(1), 2);
        assert_eq!(costs.bucket_to_run(2), 2);
        assert_eq!(costs.bucket_to_run(3), 3);
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

    /// Runs `passes` one-row passes that fit bucket `fits`, each in the bucket the costs
    /// choose, taking `truth[bucket]` seconds; returns how many ran in another bucket.
    fn run(costs: &mut PassCosts, fits: usize, truth: &[f64], passes: usize) -> usize {
        let mut probes = 0;
        for _ in 0..passes {
            let b = costs.bucket_to_run(fits);
            assert!(b >= fits, "a pass cannot run in a narrower bucket");
            probes += usize::from(b != fits);
            costs.observe_pass(b, truth[b]);
        }
        probes
    }

    #[test]
    fn a_wide_bucket_timed_during_a_burst_is_probed_until_its_estimate_is_right() {
        // The 16-wide bucket was timed at 2.4x a decode step during a burst; it costs 1.5x.
        // Trees shrank to the 8-wide bucket, so without probes it would never run again.
        let truth = [0.020, 0.026, 0.030];
        let mut costs = PassCosts::new(vec![1, 8, 16], vec![0.020, 0.026, 0.048], None);
        let probes = run(&mut costs, 1, &truth, 600);
        let (tree, _) = costs.relative(16);
        // Within AGREES of the truth, after which probes back off.
        assert!((tree[15] - 1.5).abs() < 0.1, "16 nodes cost {}", tree[15]);
        // Probed every MIN_INTERVAL passes while wrong, less often once right.
        assert!(
            (5..=600 / MIN_INTERVAL as usize).contains(&probes),
            "{probes} probes"
        );
    }

    #[test]
    fn a_wide_bucket_no_probe_reaches_drifts_back_to_the_start_up_shape() {
        // Start-up: 8 nodes 1.3x a decode step, 16: 1.5x, 32: 2.4x. A burst triples every
        // pass for 200 passes of 16-node trees; then the trees shrink to 8 nodes, so the
        // 32-wide bucket is two above the cheapest and never probed.
        let started = [0.020, 0.026, 0.030, 0.048];
        let mut costs = PassCosts::new(vec![1, 8, 16, 32], started.to_vec(), None);
        let burst = started.map(|s| 3.0 * s);
        run(&mut costs, 2, &burst, 200);
        costs.observe_pass(3, burst[3]);
        assert!(
            costs.seconds[3] > 1.5 * started[3],
            "the burst inflated the 32-wide bucket"
        );
        run(&mut costs, 1, &started, 300);
        let (tree, _) = costs.relative(32);
        assert!((tree[31] - 2.4).abs() < 0.1, "32 nodes cost {}", tree[31]);
        assert!((tree[15] - 1.5).abs() < 0.1, "16 nodes cost {}", tree[15]);
    }

    #[test]
    fn probes_of_a_right_estimate_back_off() {
        let truth = [0.020, 0.026, 0.048];
        let mut costs = PassCosts::new(vec![1, 8, 16], truth.to_vec(), None);
        let probes = run(&mut costs, 1, &truth, 10_000);
        // Intervals 32, 64, ..., 1024, then every 1024: 6 + 8 probes in 10,000 passes.
        assert!(probes <= 16, "{probes} probes");
        assert_eq!(costs.interval[2], MAX_INTERVAL);
        assert_eq!(costs.seconds, truth.to_vec());
        // A bucket in use is never due, and the narrowest bucket is never probed.
        assert_eq!(costs.bucket_to_run(2), 2);
        assert_eq!(costs.since[1], 0);
    }

    #[test]
    fn a_probe_that_finds_the_estimate_wrong_probes_again_soon() {
        let mut costs = PassCosts::new(vec![1, 8, 16], vec![0.020, 0.026, 0.048], None);
        costs.interval[2] = MAX_INTERVAL;
        (costs.since[1], costs.since[2]) = (MIN_INTERVAL, MAX_INTERVAL);
        assert_eq!(costs.bucket_to_run(0), 1, "the narrowest due bucket first");
        costs.since[1] = 0;
        // No further than one above the cheapest bucket holding the pass.
        assert_eq!(costs.bucket_to_run(0), 0);
        assert_eq!(costs.bucket_to_run(1), 2);
        costs.observe_pass(2, 0.030);
        assert_eq!(costs.interval[2], MIN_INTERVAL);
        // The probe counts PROBE_WEIGHT of the gap.
        assert!((costs.seconds[2] - (0.048 - PROBE_WEIGHT * 0.018)).abs() < 1e-12);
    }

    #[test]
    fn without_heads_their_cost_is_zero_and_stays_so() {
        let mut costs = PassCosts::new(vec![1], vec![0.01], None);
        costs.observe_heads(0.5);
        assert_eq!(costs.relative(1), (vec![1.0], 0.0));
    }
}
