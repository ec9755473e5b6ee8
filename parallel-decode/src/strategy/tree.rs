//! The candidate tree a target pass verifies.
//!
//! Node 0 is the root: the token already chosen but not yet run through the target (the
//! "pending" token). Every other node is a candidate continuation of its parent. Parents come
//! before their children, so a prefix of the node list is always a valid tree, and a chain is
//! simply a tree with one branch. Siblings carry distinct tokens: adding a path that shares a
//! prefix with one already present reuses its nodes.

/// A tree of candidate tokens rooted at the pending token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTree {
    tokens: Vec<u32>,
    parents: Vec<usize>,
    depths: Vec<usize>,
    children: Vec<Vec<usize>>,
}

impl TokenTree {
    /// A tree holding only the root.
    pub fn new(root: u32) -> Self {
        TokenTree {
            tokens: vec![root],
            parents: vec![0],
            depths: vec![0],
            children: vec![Vec::new()],
        }
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: the root is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Token of every node, in node order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Parent of `node` (the root is its own parent).
    pub fn parent(&self, node: usize) -> usize {
        self.parents[node]
    }

    /// Depth of `node` (the root has depth 0).
    pub fn depth(&self, node: usize) -> usize {
        self.depths[node]
    }

    /// Children of `node`, in the order they were added (the order the verifier tries them).
    pub fn children(&self, node: usize) -> &[usize] {
        &self.children[node]
    }

    /// The child of `node` carrying `token`, if any.
    pub fn child_with_token(&self, node: usize, token: u32) -> Option<usize> {
        self.children[node]
            .iter()
            .copied()
            .find(|&c| self.tokens[c] == token)
    }

    /// Follows `path` down from the root as far as the tree holds it: how many of its tokens
    /// are nodes, and the node reached (the root when none is).
    pub fn follow(&self, path: &[u32]) -> (usize, usize) {
        let mut at = 0;
        for (n, &token) in path.iter().enumerate() {
            match self.child_with_token(at, token) {
                Some(child) => at = child,
                None => return (n, at),
            }
        }
        (path.len(), at)
    }

    /// Adds `token` under `parent` (or returns the existing child with that token).
    ///
    /// # Panics
    /// If `parent` is not a node of this tree.
    pub fn push(&mut self, parent: usize, token: u32) -> usize {
        assert!(parent < self.len(), "parent {parent} is not a node");
        if let Some(existing) = self.child_with_token(parent, token) {
            return existing;
        }
        let node = self.tokens.len();
        self.tokens.push(token);
        self.parents.push(parent);
        self.depths.push(self.depths[parent] + 1);
        self.children.push(Vec::new());
        self.children[parent].push(node);
        node
    }

    /// Adds a path of tokens under `parent`, sharing nodes with what is already there, while
    /// the tree has fewer than `max_nodes` nodes. Returns how many tokens of the path are in
    /// the tree afterwards.
    pub fn add_path(&mut self, parent: usize, path: &[u32], max_nodes: usize) -> usize {
        let mut at = parent;
        for (n, &token) in path.iter().enumerate() {
            match self.child_with_token(at, token) {
                Some(existing) => at = existing,
                None if self.len() < max_nodes => at = self.push(at, token),
                None => return n,
            }
        }
        path.len()
    }

    /// Largest depth of any node.
    pub fn max_depth(&self) -> usize {
        self.depths.iter().copied().max().unwrap_or(0)
    }

    /// Nodes from the root to `node`, both included.
    pub fn path_to(&self, node: usize) -> Vec<usize> {
        let mut path = vec![node];
        let mut at = node;
        while at != 0 {
            at = self.parents[at];
            path.push(at);
        }
        path.reverse();
        path
    }

    /// Row-major `width x width` ancestor mask: `mask[i][j] = 1` when node j is node i or one
    /// of its ancestors. Rows past the tree (bucket padding) attend only to themselves.
    ///
    /// # Panics
    /// If the tree has more nodes than `width`.
    pub fn ancestor_mask(&self, width: usize) -> Vec<u8> {
        assert!(
            self.len() <= width,
            "tree of {} nodes in a bucket of {width}",
            self.len()
        );
        let mut mask = vec![0u8; width * width];
        for i in 0..width {
            mask[i * width + i] = 1;
        }
        for i in 1..self.len() {
            let p = self.parents[i];
            // Parent rows are complete before their children (parents come first).
            for j in 0..i {
                mask[i * width + j] |= mask[p * width + j];
            }
        }
        mask
    }

    /// Position id of every node when the root sits at position `root_position`.
    pub fn positions(&self, root_position: usize) -> Vec<i32> {
        self.depths
            .iter()
            .map(|&d| (root_position + d) as i32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_tree() -> TokenTree {
        // root(10) -> 11 -> 12, root -> 13 -> 14, 13 -> 15
        let mut t = TokenTree::new(10);
        t.add_path(0, &[11, 12], 16);
        t.add_path(0, &[13, 14], 16);
        t.add_path(0, &[13, 15], 16);
        t
    }

    #[test]
    fn paths_share_prefixes_and_keep_parents_first() {
        let t = sample_tree();
        assert_eq!(t.tokens(), &[10, 11, 12, 13, 14, 15]);
        assert_eq!(t.children(0), &[1, 3]);
        assert_eq!(t.children(3), &[4, 5]);
        assert_eq!(t.path_to(5), vec![0, 3, 5]);
        assert_eq!(t.depth(5), 2);
        assert_eq!(t.max_depth(), 2);
        for i in 1..t.len() {
            assert!(t.parent(i) < i);
        }
    }

    #[test]
    fn add_path_stops_at_the_node_budget() {
        let mut t = TokenTree::new(1);
        assert_eq!(t.add_path(0, &[2, 3, 4], 3), 2);
        assert_eq!(t.len(), 3);
        // Shared nodes cost nothing.
        assert_eq!(t.add_path(0, &[2, 3], 3), 2);
    }

    #[test]
    fn mask_marks_exactly_the_ancestors() {
        let t = sample_tree();
        let w = 8;
        let m = t.ancestor_mask(w);
        for i in 0..t.len() {
            let path = t.path_to(i);
            for j in 0..w {
                assert_eq!(m[i * w + j] == 1, path.contains(&j), "mask[{i}][{j}]");
            }
        }
        // Padding rows see only themselves.
        for i in t.len()..w {
            for j in 0..w {
                assert_eq!(m[i * w + j] == 1, i == j);
            }
        }
    }

    #[test]
    fn positions_follow_depth() {
        assert_eq!(sample_tree().positions(7), vec![7, 8, 9, 8, 9, 9]);
    }
}
