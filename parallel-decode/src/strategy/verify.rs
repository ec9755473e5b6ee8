//! Deciding which candidates of a tree the target accepts, and the token that follows them.
//!
//! Every rule here returns a [`Verdict`]: the accepted path (root first) and the next token,
//! drawn from the target at the last accepted node. The exact rules leave the output exactly as
//! the target alone would produce it:
//!
//! - [`greedy`]: follow the child whose token is the target's argmax, as long as there is one.
//!   The output equals plain greedy decoding token for token.
//! - [`sample`]: at each node, try the children in order against a residual `r` that starts as
//!   the target distribution p. A child proposed deterministically (prompt lookup, Medusa)
//!   is accepted with probability `r(x)`; a child drawn from a draft distribution q is accepted
//!   with probability `min(1, r(x) / q(x))`. On rejection the residual becomes
//!   `normalize(max(0, r - q))` (for a deterministic child: r with x removed). When no child is
//!   accepted the next token is drawn from the residual; after an accepted leaf, from p at the
//!   leaf. Each step is a speculative-sampling step against the current residual, so the
//!   emitted token has the target's distribution.
//! - [`typical`]: Medusa's typical acceptance, accepting a candidate when
//!   `p(x) > min(epsilon, delta * exp(-H(p)))`. Faster, **not exact**: offered as an option
//!   and labelled so.

use super::tree::TokenTree;
use crate::sampling::Sampler;

/// The outcome of verifying one tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Accepted nodes from the root (always node 0) down the accepted path.
    pub accepted: Vec<usize>,
    /// The token that follows the accepted path, drawn from the target.
    pub next_token: u32,
}

impl Verdict {
    /// Candidate tokens accepted (the root is not a candidate).
    pub fn accepted_candidates(&self) -> usize {
        self.accepted.len() - 1
    }
}

/// Greedy verification from the target's argmax at every node (`argmax[i]` = the target's
/// choice for the token after node i).
///
/// # Panics
/// If `argmax` has fewer entries than the tree has nodes.
pub fn greedy(tree: &TokenTree, argmax: &[u32]) -> Verdict {
    assert!(
        argmax.len() >= tree.len(),
        "{} argmax values for {} nodes",
        argmax.len(),
        tree.len()
    );
    let mut accepted = vec![0];
    let mut at = 0;
    while let Some(child) = tree.child_with_token(at, argmax[at]) {
        accepted.push(child);
        at = child;
    }
    Verdict {
        accepted,
        next_token: argmax[at],
    }
}

/// How the children of a node were proposed.
#[derive(Debug, Clone, Copy)]
pub enum Proposed<'a> {
    /// Chosen deterministically from the context (a point mass).
    Deterministic,
    /// Drawn from this draft distribution (over the vocabulary, after the same sampling
    /// transform as the target).
    Drawn(&'a [f32]),
}

/// Exact speculative sampling over a tree (see the module docs).
///
/// `target(node)` gives the target's distribution for the token after `node` (already
/// transformed by the sampling configuration); it is only asked for the nodes the walk
/// visits. `proposed(child)` says how a child was proposed.
///
/// # Errors
/// Whatever `target` returns.
pub fn sample<'q, E>(
    tree: &TokenTree,
    target: &mut dyn FnMut(usize) -> Result<Vec<f32>, E>,
    proposed: &dyn Fn(usize) -> Proposed<'q>,
    sampler: &mut Sampler,
) -> Result<Verdict, E> {
    let mut accepted = vec![0];
    let mut at = 0;
    loop {
        let p = target(at)?;
        let mut residual = p.clone();
        let mut next = None;
        for &child in tree.children(at) {
            let x = tree.tokens()[child] as usize;
            let accept_probability = match proposed(child) {
                Proposed::Deterministic => residual[x] as f64,
                Proposed::Drawn(q) if q[x] > 0.0 => (residual[x] as f64 / q[x] as f64).min(1.0),
                // A drawn token the draft gives no mass is malformed input: never accept it.
                Proposed::Drawn(_) => 0.0,
            };
            if sampler.uniform() < accept_probability {
                next = Some(child);
                break;
            }
            match proposed(child) {
                Proposed::Deterministic => residual[x] = 0.0,
                Proposed::Drawn(q) => {
                    for (r, qv) in residual.iter_mut().zip(q) {
                        *r = (*r - qv).max(0.0);
                    }
                }
            }
            normalize_or(&mut residual, &p);
        }
        match next {
            Some(child) => {
                accepted.push(child);
                at = child;
            }
            None => {
                // No child accepted (or a leaf): the token comes from what is left of p.
                let token = sampler
                    .draw(&residual)
                    .or_else(|| sampler.draw(&p))
                    .unwrap_or(0);
                return Ok(Verdict {
                    accepted,
                    next_token: token as u32,
                });
            }
        }
    }
}

/// Normalises `r` in place; if nothing is left, falls back to `p` (which can only happen
/// through rounding when the proposals already covered the whole of p).
fn normalize_or(r: &mut [f32], p: &[f32]) {
    let total: f64 = r.iter().map(|&x| x as f64).sum();
    if total > 0.0 {
        for x in r.iter_mut() {
            *x = (*x as f64 / total) as f32;
        }
    } else {
        r.copy_from_slice(p);
    }
}

/// Thresholds of Medusa's typical acceptance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TypicalAcceptance {
    /// Hard threshold on the candidate's probability (the Medusa paper's epsilon, 0.09).
    pub epsilon: f32,
    /// Scale of the entropy-adaptive threshold (the paper's delta, 0.3).
    pub delta: f32,
}

impl Default for TypicalAcceptance {
    fn default() -> Self {
        TypicalAcceptance {
            epsilon: 0.09,
            delta: 0.3,
        }
    }
}

/// Typical acceptance (inexact; see the module docs): the longest path whose every candidate
/// passes the threshold, then the next token drawn from the target at its end.
///
/// # Errors
/// Whatever `target` returns.
pub fn typical<E>(
    tree: &TokenTree,
    target: &mut dyn FnMut(usize) -> Result<Vec<f32>, E>,
    thresholds: TypicalAcceptance,
    sampler: &mut Sampler,
) -> Result<Verdict, E> {
    // Depth-first over passing children; keep the longest path (first found on ties).
    let mut best: Vec<usize> = vec![0];
    let mut stack: Vec<Vec<usize>> = vec![vec![0]];
    let mut dists: Vec<Option<Vec<f32>>> = vec![None; tree.len()];
    while let Some(path) = stack.pop() {
        let at = *path.last().unwrap_or(&0);
        if dists[at].is_none() {
            dists[at] = Some(target(at)?);
        }
        let p = dists[at].as_deref().unwrap_or(&[]);
        let entropy: f64 = p
            .iter()
            .filter(|&&x| x > 0.0)
            .map(|&x| -(x as f64) * (x as f64).ln())
            .sum();
        let threshold = (thresholds.epsilon as f64).min(thresholds.delta as f64 * (-entropy).exp());
        let mut passing: Vec<usize> = tree
            .children(at)
            .iter()
            .copied()
            .filter(|&c| p[tree.tokens()[c] as usize] as f64 > threshold)
            .collect();
        if passing.is_empty() && path.len() > best.len() {
            best = path.clone();
        }
        passing.reverse();
        for c in passing {
            let mut longer = path.clone();
            longer.push(c);
            stack.push(longer);
        }
    }
    let last = *best.last().unwrap_or(&0);
    let p = match dists[last].take() {
        Some(p) => p,
        None => target(last)?,
    };
    let token = sampler.draw(&p).unwrap_or(0);
    Ok(Verdict {
        accepted: best,
        next_token: token as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::convert::Infallible;

    fn tree(paths: &[&[u32]]) -> TokenTree {
        let mut t = TokenTree::new(100);
        for p in paths {
            t.add_path(0, p, 64);
        }
        t
    }

    #[test]
    fn greedy_follows_the_argmax_chain() {
        // root -> 1 -> 2, root -> 3. Target: after root 1, after node(1) 2, after node(2) 7.
        let t = tree(&[&[1, 2], &[3]]);
        let v = greedy(&t, &[1, 2, 7, 0]);
        assert_eq!(
            v,
            Verdict {
                accepted: vec![0, 1, 2],
                next_token: 7
            }
        );
        // Target wants 3 first: the other branch.
        let v = greedy(&t, &[3, 9, 9, 5]);
        assert_eq!(
            v,
            Verdict {
                accepted: vec![0, 3],
                next_token: 5
            }
        );
        // Target wants something not proposed: nothing accepted, its choice is the next token.
        let v = greedy(&t, &[4, 0, 0, 0]);
        assert_eq!(
            v,
            Verdict {
                accepted: vec![0],
                next_token: 4
            }
        );
    }

    /// A toy target over a vocabulary of 4 whose distribution depends on the context length
    /// and last token.
    fn toy_p(context: &[u32]) -> Vec<f32> {
        let last = *context.last().unwrap_or(&0) as usize;
        let base = [
            [0.5, 0.2, 0.2, 0.1],
            [0.1, 0.6, 0.1, 0.2],
            [0.25, 0.25, 0.25, 0.25],
            [0.05, 0.15, 0.3, 0.5],
        ];
        let mut p = base[(last + context.len()) % 4].to_vec();
        p.rotate_left(context.len() % 4);
        p
    }

    /// Builds one proposal: the tree and, for drawn chains, the draft distribution per depth.
    type MakeProposal<'a> = &'a dyn Fn(&mut Sampler) -> (TokenTree, Option<Vec<Vec<f32>>>);

    /// Emits the first two tokens after `prompt` by verifying `t` (whose root is the
    /// already-chosen pending token), repeated `n` times; returns counts per (t1, t2) pair.
    fn empirical(n: usize, make: MakeProposal<'_>, seed: u64) -> HashMap<(u32, u32), usize> {
        let prompt = [2u32, 0];
        let mut sampler = Sampler::new(seed);
        let mut counts = HashMap::new();
        for _ in 0..n {
            let (t, q) = make(&mut sampler);
            let path_tokens = |node: usize| {
                let mut ctx = prompt.to_vec();
                ctx.extend(t.path_to(node).iter().map(|&i| t.tokens()[i]));
                ctx
            };
            let mut target = |node: usize| Ok::<_, Infallible>(toy_p(&path_tokens(node)));
            let proposed = |child: usize| match &q {
                Some(q) => Proposed::Drawn(&q[t.depth(child) - 1]),
                None => Proposed::Deterministic,
            };
            let v = sample(&t, &mut target, &proposed, &mut sampler).unwrap();
            let mut emitted: Vec<u32> = v.accepted[1..].iter().map(|&i| t.tokens()[i]).collect();
            emitted.push(v.next_token);
            // The second token, when only one was emitted, comes from the target directly.
            if emitted.len() == 1 {
                let mut ctx = path_tokens(*v.accepted.last().unwrap());
                ctx.push(emitted[0]);
                emitted.push(sampler.draw(&toy_p(&ctx)).unwrap() as u32);
            }
            *counts.entry((emitted[0], emitted[1])).or_insert(0) += 1;
        }
        counts
    }

    /// Pearson chi-square of the counts against the exact target distribution of the pair.
    fn chi_square(counts: &HashMap<(u32, u32), usize>, n: usize) -> (f64, usize) {
        let root = 100u32;
        let mut stat = 0.0;
        let mut cells = 0;
        for a in 0..4u32 {
            let p1 = toy_p(&[2, 0, root])[a as usize] as f64;
            for b in 0..4u32 {
                let p2 = toy_p(&[2, 0, root, a])[b as usize] as f64;
                let expected = p1 * p2 * n as f64;
                let observed = *counts.get(&(a, b)).unwrap_or(&0) as f64;
                if expected > 0.0 {
                    stat += (observed - expected).powi(2) / expected;
                    cells += 1;
                } else {
                    assert_eq!(observed, 0.0, "impossible pair ({a},{b}) emitted");
                }
            }
        }
        (stat, cells - 1)
    }

    // 15 degrees of freedom: the 0.999 quantile of chi-square is 37.70, so a correct
    // verifier fails each of these checks with probability 0.001 (the seeds are fixed, so the
    // outcome is deterministic; the bound says how unlucky a seed would have to be).
    const CHI2_15_999: f64 = 37.70;
    const N: usize = 20_000;

    #[test]
    fn deterministic_tree_sampling_keeps_the_target_distribution() {
        let make = |_: &mut Sampler| (tree(&[&[0, 1], &[3, 3], &[1], &[2, 0]]), None);
        let (stat, dof) = chi_square(&empirical(N, &make, 11), N);
        assert_eq!(dof, 15);
        assert!(stat < CHI2_15_999, "chi-square {stat:.1}");
    }

    #[test]
    fn drawn_chain_sampling_keeps_the_target_distribution() {
        // A draft that disagrees with the target: q fixed, chain of two drawn from it.
        let q = vec![vec![0.7f32, 0.1, 0.1, 0.1], vec![0.1f32, 0.1, 0.1, 0.7]];
        let make = move |s: &mut Sampler| {
            let a = s.draw(&q[0]).unwrap() as u32;
            let b = s.draw(&q[1]).unwrap() as u32;
            (tree(&[&[a, b]]), Some(q.clone()))
        };
        let (stat, _) = chi_square(&empirical(N, &make, 12), N);
        assert!(stat < CHI2_15_999, "chi-square {stat:.1}");
    }

    #[test]
    fn a_broken_rule_is_caught_by_the_same_test() {
        // Accepting a deterministic candidate whenever p(x) > 0 is wrong; the test must see it.
        let mut sampler = Sampler::new(13);
        let mut counts = HashMap::new();
        for _ in 0..N {
            let a = if toy_p(&[2, 0, 100])[0] > 0.0 {
                0
            } else {
                sampler.draw(&toy_p(&[2, 0, 100])).unwrap() as u32
            };
            let b = sampler.draw(&toy_p(&[2, 0, 100, a])).unwrap() as u32;
            *counts.entry((a, b)).or_insert(0usize) += 1;
        }
        assert!(chi_square(&counts, N).0 > CHI2_15_999);
    }

    #[test]
    fn typical_acceptance_is_longest_passing_path_and_differs_from_the_target() {
        let t = tree(&[&[0, 1], &[3, 3], &[1]]);
        let mut sampler = Sampler::new(14);
        let mut counts = HashMap::new();
        for _ in 0..N {
            let path_tokens = |node: usize| {
                let mut ctx = vec![2, 0];
                ctx.extend(t.path_to(node).iter().map(|&i| t.tokens()[i]));
                ctx
            };
            let mut target = |node: usize| Ok::<_, Infallible>(toy_p(&path_tokens(node)));
            let v = typical(&t, &mut target, TypicalAcceptance::default(), &mut sampler).unwrap();
            let mut emitted: Vec<u32> = v.accepted[1..].iter().map(|&i| t.tokens()[i]).collect();
            emitted.push(v.next_token);
            if emitted.len() == 1 {
                let mut ctx = path_tokens(*v.accepted.last().unwrap());
                ctx.push(emitted[0]);
                emitted.push(sampler.draw(&toy_p(&ctx)).unwrap() as u32);
            }
            *counts.entry((emitted[0], emitted[1])).or_insert(0usize) += 1;
        }
        let (stat, _) = chi_square(&counts, N);
        assert!(
            stat > CHI2_15_999,
            "typical acceptance should not match the target exactly ({stat:.1})"
        );
    }
}
