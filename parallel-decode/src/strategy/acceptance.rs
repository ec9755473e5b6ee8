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

/// How many of `chances` (candidates' chances of being accepted, in the order they would be
/// added, each after its parent) to verify: the `n` that maximises
/// `(1 + sum of the first n) / (cost(n + 1) + heads)`. Verifying none scores `none` (the
/// throughput without candidates); with `None`, at least one is verified when there is any.
pub fn best_count(
    chances: impl IntoIterator<Item = f32>,
    tree_cost: &[f32],
    heads: f32,
    none: Option<f32>,
) -> usize {
    let mut best = (0, none.unwrap_or(f32::MIN));
    let mut expected = 0.0;
    for (n, chance) in chances.into_iter().enumerate() {
        expected += chance;
        let throughput = (1.0 + expected) / (pass_cost(tree_cost, n + 2) + heads);
        if throughput > best.1 {
            best = (n + 1, throughput);
        }
    }
    best.0
}

/// The length `k` of a chain that maximises tokens per unit of cost, if any beats the tree
/// without it: `gains[k - 1]` is the chain's expected accepted tokens at length `k` should it
/// be reached, `expected` the tree's expected accepted tokens so far, `reach` the chance the
/// chain is reached (the branches before it rejected), `nodes` the tree's size before it.
pub fn best_chain_length(
    gains: &[f32],
    expected: f32,
    reach: f32,
    nodes: usize,
    tree_cost: &[f32],
) -> Option<usize> {
    let base = (1.0 + expected) / pass_cost(tree_cost, nodes);
    gains
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            (
                i + 1,
                (1.0 + expected + reach * g) / pass_cost(tree_cost, nodes + i + 1),
            )
        })
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .filter(|&(_, rate)| rate > base)
        .map(|(k, _)| k)
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

    #[test]
    fn the_best_count_weighs_chances_against_cost_and_the_option_of_none() {
        let steep: Vec<f32> = (0..8).map(|n| 1.0 + 0.3 * n as f32).collect();
        // (1 + 0.7) / 1.3 = 1.31, (1 + 1.3) / 1.6 = 1.44, (1 + 1.5) / 1.9 = 1.32.
        assert_eq!(best_count([0.7, 0.6, 0.2], &steep, 0.0, Some(1.0)), 2);
        // Nothing pays: none, unless none is not a choice.
        assert_eq!(best_count([0.1, 0.1], &steep, 0.0, Some(1.0)), 0);
        assert_eq!(best_count([0.1, 0.1], &steep, 0.0, None), 1);
        assert_eq!(best_count([], &steep, 0.0, None), 0);
    }

    #[test]
    fn the_best_chain_length_pays_for_its_nodes() {
        // Flat cost: the longest chain; a steep one: shorter; gains too small: none.
        let gains = [0.9, 1.7, 2.4, 2.5];
        assert_eq!(best_chain_length(&gains, 0.0, 1.0, 1, &[1.0; 8]), Some(4));
        let steep = [1.0, 1.2, 1.4, 2.5, 4.0];
        assert_eq!(best_chain_length(&gains, 0.0, 1.0, 1, &steep), Some(2));
        assert_eq!(best_chain_length(&[0.1, 0.15], 0.0, 1.0, 1, &steep), None);
        // A chain reached rarely (after other branches) is worth less.
        assert_eq!(best_chain_length(&gains, 1.0, 0.1, 3, &steep), None);
    }
}
