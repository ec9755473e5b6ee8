//! Choosing the candidate tree by measurement.
//!
//! A tree (a list of rank paths, see [`MedusaTree`]) accepts, at one position, every path
//! whose ranks match the true tokens' ranks under the heads; at most one path per depth can
//! match. So the expected number of accepted candidates is the sum, over the tree's paths, of
//! each path's acceptance probability, which [`super::eval`] measures on held-out prompts.
//! Every path is at most as likely as its parent, so for a given number of paths the best
//! tree is simply the most likely paths (ties broken by depth, which keeps parents first).
//!
//! A pass over a tree of `T` nodes (the pending token plus the candidates) costs `cost(T)`: the
//! time of the smallest verify bucket that holds it, plus one run of the heads. The expected
//! throughput is `(1 + E[accepted]) / (cost(T) + heads)` tokens per unit of time, against
//! `1 / cost(1)` for plain decoding; the tree size that maximises it wins. On two CPU cores a
//! pass costs more as `T` grows, so the best tree is moderate; on a NeuronCore the cost is
//! nearly flat up to tens of tokens ([`CostModel::flat`]), so the best tree is the largest.
//!
//! The tree recorded with the heads ([`TreeChoice::recorded`]) is the chosen one followed by
//! the next most likely paths no deeper than it, up to the next verify bucket. The Medusa
//! proposer sizes each pass from the heads' confidence (see [`crate::strategy::medusa`]), so
//! the recorded paths are what it chooses from: the extra ones let a pass the heads are unsure
//! of try second and third candidates, at no cost in heads (the depth is the chosen tree's)
//! and none in passes that do not use them. (On two CPU cores, with the default heads, a
//! recorded tree of 8 paths beat the chosen 5 by 2-4% on the open benchmark prompts; 15 paths
//! gained nothing more.)

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::eval::PathStats;
use crate::error::{Error, Result};
use crate::strategy::medusa::MedusaTree;

/// What a pass costs, by tree width, in any one unit (seconds when measured).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// Where the figures come from (`measured on ...`, `flat`, a table's path).
    pub source: String,
    /// `(width, cost)` of each compiled verify bucket, narrowest first; width 1 is a decode
    /// step.
    pub widths: Vec<(usize, f64)>,
    /// Cost of one run of the heads (paid once per pass when the tree has candidates), or,
    /// with `heads_per_depth`, of one head.
    pub heads: f64,
    /// Whether the heads run one after the other (heads that take the path), so that a tree
    /// of depth `d` pays `d` times `heads`; otherwise they run together and cost `heads`
    /// whatever the depth.
    #[serde(default)]
    pub heads_per_depth: bool,
}

impl CostModel {
    /// A device whose pass costs the same for every width up to `max_width` (what a
    /// NeuronCore's cost curve looks like), with heads costing `heads` of a decode step (per
    /// depth with `heads_per_depth`).
    pub fn flat(max_width: usize, heads: f64, heads_per_depth: bool) -> Self {
        let mut widths = vec![(1, 1.0)];
        let mut w = 2;
        while w <= max_width {
            widths.push((w, 1.0));
            w *= 2;
        }
        if widths.last().is_some_and(|&(last, _)| last < max_width) {
            widths.push((max_width, 1.0));
        }
        CostModel {
            source: format!("modeled: flat up to {max_width} tokens"),
            widths,
            heads,
            heads_per_depth,
        }
    }

    /// Reads a cost table (for a Neuron device, say): JSON
    /// `{"widths": [[1, 1.0], [2, 1.01], ...], "heads": 0.05, "heads_per_depth": true}`, in any
    /// one unit (`heads_per_depth` may be left out: false).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Json`] naming the file; [`Error::Setting`] for a table
    /// without width 1 or with a cost that is not positive.
    pub fn read(path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Table {
            widths: Vec<(usize, f64)>,
            #[serde(default)]
            heads: f64,
            #[serde(default)]
            heads_per_depth: bool,
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))?;
        let t: Table = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let model = CostModel {
            source: path.display().to_string(),
            widths: t.widths,
            heads: t.heads,
            heads_per_depth: t.heads_per_depth,
        };
        model.validate()?;
        Ok(model)
    }

    /// Checks that the table has width 1 and positive, finite costs; sorts it.
    ///
    /// # Errors
    /// [`Error::Setting`] saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| {
            Err(Error::Setting {
                field: "cost model",
                message,
            })
        };
        if !self.widths.iter().any(|&(w, _)| w == 1) {
            return bad(format!(
                "{}: has no cost for width 1 (a decode step)",
                self.source
            ));
        }
        if let Some(&(w, c)) = self
            .widths
            .iter()
            .find(|&&(w, c)| w == 0 || !(c.is_finite() && c > 0.0))
        {
            return bad(format!("{}: width {w} has cost {c}", self.source));
        }
        if !(self.heads.is_finite() && self.heads >= 0.0) {
            return bad(format!("{}: heads cost {}", self.source, self.heads));
        }
        Ok(())
    }

    /// The cost of a pass over `nodes` tokens: the narrowest width that holds them (`None`
    /// when none does).
    pub fn pass(&self, nodes: usize) -> Option<f64> {
        self.widths
            .iter()
            .filter(|&&(w, _)| w >= nodes)
            .min_by_key(|&&(w, _)| w)
            .map(|&(_, c)| c)
    }

    /// The cost of running the heads for a tree of depth `depth`.
    pub fn heads_for(&self, depth: usize) -> f64 {
        if self.heads_per_depth {
            self.heads * depth as f64
        } else {
            self.heads
        }
    }

    /// The widest pass measured.
    pub fn max_width(&self) -> usize {
        self.widths.iter().map(|&(w, _)| w).max().unwrap_or(1)
    }

    /// The costs relative to a decode step, as proposers see them
    /// ([`crate::backend::ModelInfo::tree_cost`] and `heads_cost`): entry `n - 1` is the cost
    /// of a pass over `n` nodes for `n` up to `max_tree`, and a run of all `heads` heads.
    ///
    /// # Errors
    /// [`Error::Setting`] when the table is invalid or stops short of `max_tree` tokens.
    pub fn relative(&self, max_tree: usize, heads: usize) -> Result<(Vec<f32>, f32)> {
        self.validate()?;
        let one = self.pass(1).unwrap_or(1.0);
        let tree = (1..=max_tree.max(1))
            .map(|n| {
                self.pass(n).map(|c| (c / one) as f32).ok_or_else(|| Error::Setting {
                    field: "cost model",
                    message: format!(
                        "{}: the widest pass is {} tokens, this model verifies up to {max_tree}",
                        self.source,
                        self.max_width()
                    ),
                })
            })
            .collect::<Result<Vec<f32>>>()?;
        Ok((tree, (self.heads_for(heads) / one) as f32))
    }
}

/// Limits on the trees considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Most nodes, the pending token included (the largest verify bucket).
    pub max_nodes: usize,
    /// Deepest path (the number of heads).
    pub max_depth: usize,
    /// Highest candidate rank plus one (the candidates the heads graph returns per head).
    pub max_rank: usize,
}

/// The expected value of one tree size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeOption {
    /// Nodes of the pass, the pending token included.
    pub nodes: usize,
    /// Expected tokens emitted per pass: 1 + expected accepted candidates.
    pub expected_tau: f64,
    /// Cost of the pass, heads included.
    pub cost: f64,
    /// Expected tokens per unit of cost.
    pub throughput: f64,
    /// Throughput over plain decoding's under the same cost model.
    pub speedup: f64,
}

/// The chosen tree and what every size would have given.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeChoice {
    /// The best tree.
    pub tree: MedusaTree,
    /// The tree to record with the heads: [`TreeChoice::tree`], then the next most likely
    /// paths no deeper than it until it fills the next verify bucket (see the module
    /// documentation).
    pub recorded: MedusaTree,
    /// Its expected figures.
    pub best: TreeOption,
    /// Every size considered, smallest first (`nodes = 1` is plain decoding).
    pub options: Vec<TreeOption>,
}

/// Paths within `limits`, most likely first (ties: shallower first, then by ranks), with their
/// acceptance probabilities. Unobserved paths are left out.
pub fn ranked_paths(stats: &PathStats, limits: &TreeLimits) -> Vec<(Vec<usize>, f64)> {
    if stats.positions == 0 {
        return Vec::new();
    }
    let mut paths: Vec<(Vec<usize>, f64)> = stats
        .counts
        .iter()
        .filter(|(p, c)| {
            *c > 0
                && !p.is_empty()
                && p.len() <= limits.max_depth
                && p.iter().all(|&r| r < limits.max_rank)
        })
        .map(|(p, c)| (p.clone(), *c as f64 / stats.positions as f64))
        .collect();
    paths.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(a.0.len().cmp(&b.0.len()))
            .then(a.0.cmp(&b.0))
    });
    paths
}

/// Chooses the tree that maximises expected throughput under `cost`.
///
/// # Errors
/// [`Error::Setting`] when the cost model is invalid.
pub fn choose_tree(stats: &PathStats, cost: &CostModel, limits: &TreeLimits) -> Result<TreeChoice> {
    cost.validate()?;
    let base = cost.pass(1).unwrap_or(1.0);
    let max_nodes = limits.max_nodes.min(cost.max_width()).max(1);
    let paths = ranked_paths(stats, limits);
    let mut options = vec![TreeOption {
        nodes: 1,
        expected_tau: 1.0,
        cost: base,
        throughput: 1.0 / base,
        speedup: 1.0,
    }];
    let mut accepted = 0.0;
    let mut depth = 0;
    for (n, (path, p)) in paths.iter().take(max_nodes - 1).enumerate() {
        accepted += p;
        depth = depth.max(path.len());
        let nodes = n + 2;
        let Some(pass) = cost.pass(nodes) else {
            break;
        };
        let c = pass + cost.heads_for(depth);
        let throughput = (1.0 + accepted) / c;
        options.push(TreeOption {
            nodes,
            expected_tau: 1.0 + accepted,
            cost: c,
            throughput,
            speedup: throughput * base,
        });
    }
    let best = options
        .iter()
        .max_by(|a, b| {
            a.throughput
                .total_cmp(&b.throughput)
                .then(b.nodes.cmp(&a.nodes))
        })
        .cloned()
        .unwrap_or_else(|| options[0].clone());
    let tree_paths: Vec<Vec<usize>> = paths
        .iter()
        .take(best.nodes - 1)
        .map(|(p, _)| p.clone())
        .collect();
    let recorded = MedusaTree::new(extended(&tree_paths, &paths, cost, max_nodes))?;
    let tree = MedusaTree::new(tree_paths)?;
    Ok(TreeChoice {
        tree,
        recorded,
        best,
        options,
    })
}

/// `chosen` (the first paths of `ranked`), then the next paths of `ranked` no deeper than
/// `chosen`, until the tree has as many nodes as the next verify bucket of `cost` (at most
/// `max_nodes`). Closed under parents: a path's parent is shallower and at least as likely,
/// so it comes first in `ranked` and passes the depth limit too.
fn extended(
    chosen: &[Vec<usize>],
    ranked: &[(Vec<usize>, f64)],
    cost: &CostModel,
    max_nodes: usize,
) -> Vec<Vec<usize>> {
    let depth = chosen.iter().map(Vec::len).max().unwrap_or(0);
    let nodes = chosen.len() + 1;
    let Some(bucket) = cost
        .widths
        .iter()
        .map(|&(w, _)| w)
        .find(|&w| w > nodes && w <= max_nodes)
    else {
        return chosen.to_vec();
    };
    let mut paths = chosen.to_vec();
    paths.extend(
        ranked[chosen.len()..]
            .iter()
            .filter(|(p, _)| p.len() <= depth)
            .take(bucket - nodes)
            .map(|(p, _)| p.clone()),
    );
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> PathStats {
        // 100 positions: head 0's best candidate is right 60 times, its second 20 times; after
        // a right first candidate, head 1's best is right 30 times.
        PathStats {
            positions: 100,
            counts: vec![
                (vec![0], 60),
                (vec![0, 0], 30),
                (vec![0, 0, 0], 12),
                (vec![0, 1], 5),
                (vec![1], 20),
                (vec![1, 0], 8),
                (vec![2], 5),
            ],
        }
    }

    const LIMITS: TreeLimits = TreeLimits {
        max_nodes: 32,
        max_depth: 4,
        max_rank: 10,
    };

    #[test]
    fn paths_come_most_likely_first_with_parents_first() {
        let p = ranked_paths(&stats(), &LIMITS);
        let order: Vec<Vec<usize>> = p.iter().map(|x| x.0.clone()).collect();
        assert_eq!(
            order,
            vec![
                vec![0],
                vec![0, 0],
                vec![1],
                vec![0, 0, 0],
                vec![1, 0],
                vec![2],
                vec![0, 1]
            ]
        );
        let shallow = TreeLimits {
            max_depth: 1,
            ..LIMITS
        };
        assert_eq!(ranked_paths(&stats(), &shallow).len(), 3);
    }

    #[test]
    fn picks_the_best_tree_by_hand() {
        // Buckets 1, 2, 4, 8 costing 1, 1.1, 1.2, 2.0; heads 0.1.
        // nodes 2: tau 1.6 / 1.2 = 1.333; 3: 1.9 / 1.3 = 1.462; 4: 2.1 / 1.3 = 1.615;
        // 5: 2.22 / 2.1 = 1.057 ... the 4-node tree [0], [0,0], [1] wins.
        let cost = CostModel {
            source: "hand".into(),
            widths: vec![(1, 1.0), (2, 1.1), (4, 1.2), (8, 2.0)],
            heads: 0.1,
            heads_per_depth: false,
        };
        let c = choose_tree(&stats(), &cost, &LIMITS).unwrap();
        assert_eq!(c.tree.paths(), &[vec![0], vec![0, 0], vec![1]]);
        assert_eq!(c.best.nodes, 4);
        // Recorded: then the most likely paths of depth at most 2 (not [0, 0, 0]) up to the
        // next bucket, 8 nodes: [1, 0], [2], [0, 1], and no more exist.
        assert_eq!(
            c.recorded.paths(),
            &[
                vec![0],
                vec![0, 0],
                vec![1],
                vec![1, 0],
                vec![2],
                vec![0, 1]
            ]
        );
        assert!((c.best.expected_tau - 2.1).abs() < 1e-9);
        assert!((c.best.speedup - 2.1 / 1.3).abs() < 1e-9);
        assert_eq!(c.options.len(), 8);
        // Heads that run one after the other cost 0.1 per depth: 3 nodes (depth 2) pay 0.2,
        // and the same tree wins by less: 2.1 / 1.4.
        let sequential = CostModel {
            heads_per_depth: true,
            ..cost.clone()
        };
        assert!((sequential.heads_for(3) - 0.3).abs() < 1e-12);
        let c = choose_tree(&stats(), &sequential, &LIMITS).unwrap();
        assert_eq!(c.best.nodes, 4);
        assert!((c.best.speedup - 2.1 / 1.4).abs() < 1e-9);
        // On a flat device, every observed path is worth adding.
        let flat = choose_tree(&stats(), &CostModel::flat(32, 0.1, false), &LIMITS).unwrap();
        assert_eq!(flat.tree.len(), 7);
        assert_eq!(flat.recorded, flat.tree, "nothing left to add");
        assert!((flat.best.expected_tau - 2.4).abs() < 1e-9);
        // When heads cost more than they bring, plain decoding wins: an empty tree.
        let dear = CostModel { heads: 5.0, ..cost };
        let c = choose_tree(&stats(), &dear, &LIMITS).unwrap();
        assert!(c.tree.is_empty());
        assert!(c.recorded.is_empty(), "no depth to fill");
        assert_eq!(c.best.nodes, 1);
    }

    #[test]
    fn bad_tables_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cost.json");
        std::fs::write(&path, r#"{"widths": [[2, 1.0]], "heads": 0.1}"#).unwrap();
        let err = CostModel::read(&path).unwrap_err().to_string();
        assert!(err.contains("width 1"), "{err}");
        std::fs::write(&path, r#"{"widths": [[1, -1.0]]}"#).unwrap();
        assert!(CostModel::read(&path).is_err());
        std::fs::write(
            &path,
            r#"{"widths": [[1, 1.0], [16, 1.02]], "heads": 0.04}"#,
        )
        .unwrap();
        let m = CostModel::read(&path).unwrap();
        assert_eq!(m.pass(9), Some(1.02));
        assert_eq!(m.pass(17), None);
        // As proposers see it: per node count, relative to a decode step.
        let (tree, heads) = m.relative(3, 2).unwrap();
        assert_eq!((tree, heads), (vec![1.0, 1.02, 1.02], 0.04));
        let per_depth = CostModel {
            heads_per_depth: true,
            ..m.clone()
        };
        assert!((per_depth.relative(3, 2).unwrap().1 - 0.08).abs() < 1e-6);
        let err = m.relative(32, 2).unwrap_err().to_string();
        assert!(
            err.contains("widest pass is 16 tokens") && err.contains("up to 32"),
            "{err}"
        );
        std::fs::write(&path, "{").unwrap();
        assert!(
            CostModel::read(&path)
                .unwrap_err()
                .to_string()
                .contains("cost.json")
        );
    }
}
