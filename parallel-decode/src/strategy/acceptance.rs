//! What proposers learn as they go: how often their candidates are accepted, and what a
//! longer proposal costs. A proposer weighs the expected tokens of a proposal against the
//! target's cost of verifying it, and proposes less (or nothing) when that does not pay.

/// A decayed acceptance rate: recent outcomes weigh most, and a prior stands in for the
/// outcomes not yet seen.
#[derive(Debug, Clone, Copy)]
pub struct Acceptance {
    accepted: f32,
    rejected: f32,
}

impl Acceptance {
    /// Weight of the prior, in observations.
    const PRIOR: f32 = 2.0;
    /// Decay per observation: about the last 20 count.
    const DECAY: f32 = 0.95;

    /// Starts at the rate `prior`.
    pub fn new(prior: f32) -> Self {
        Acceptance {
            accepted: prior * Self::PRIOR,
            rejected: (1.0 - prior) * Self::PRIOR,
        }
    }

    /// Accepted over accepted plus rejected, decayed.
    pub fn rate(&self) -> f32 {
        self.accepted / (self.accepted + self.rejected).max(1e-6)
    }

    /// Records `accepted` accepted candidates and whether one was then rejected (a chain of
    /// k candidates accepting all k is `(k, false)`; one candidate judged alone is
    /// `(1, false)` or `(0, true)`).
    pub fn observe(&mut self, accepted: usize, rejected: bool) {
        self.accepted = self.accepted * Self::DECAY + accepted as f32;
        self.rejected = self.rejected * Self::DECAY + f32::from(u8::from(rejected));
    }
}

/// Relative cost of a pass over `nodes` nodes from the target's measured curve
/// ([`crate::backend::ModelInfo::tree_cost`]); without a curve, a mild default slope.
pub fn pass_cost(tree_cost: &[f32], nodes: usize) -> f32 {
    match tree_cost.get(nodes.saturating_sub(1)) {
        Some(&c) => c,
        None if tree_cost.is_empty() => 1.0 + 0.03 * nodes.saturating_sub(1) as f32,
        None => tree_cost.last().copied().unwrap_or(1.0),
    }
}

/// Length of the common prefix of two token sequences: how far an accepted path followed a
/// proposed one (by tokens, so that it holds in a tree merged from several proposers).
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_starts_at_the_prior_and_follows_recent_outcomes() {
        let mut a = Acceptance::new(0.5);
        assert!((a.rate() - 0.5).abs() < 1e-6);
        for _ in 0..100 {
            a.observe(0, true);
        }
        assert!(a.rate() < 0.01, "{}", a.rate());
        for _ in 0..100 {
            a.observe(1, false);
        }
        assert!(a.rate() > 0.99, "{}", a.rate());
    }

    #[test]
    fn cost_comes_from_the_curve_or_a_default() {
        assert_eq!(pass_cost(&[1.0, 1.5, 2.0], 2), 1.5);
        assert_eq!(pass_cost(&[1.0, 1.5, 2.0], 9), 2.0);
        assert!((pass_cost(&[], 11) - 1.3).abs() < 1e-6);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
