//! Turning logits into the distribution the next token is drawn from, and drawing from it.
//!
//! [`SamplingConfig::distribution`] is the single transform (temperature, then top-k, then
//! top-p) applied to the target's logits and to a draft model's alike: exact speculative
//! sampling needs p and q to come from the same transform.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p`.
    pub top_p: Option<f32>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig::greedy()
    }
}

/// Why a sampling configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid sampling setting: {0}")]
pub struct InvalidSampling(pub String);

impl SamplingConfig {
    /// Greedy decoding: the most likely token, first on ties.
    pub const fn greedy() -> Self {
        SamplingConfig {
            temperature: 0.0,
            top_k: None,
            top_p: None,
        }
    }

    /// Whether this is greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == Some(1)
    }

    /// Checks the ranges: temperature finite and >= 0, top-k >= 1, 0 < top-p <= 1.
    ///
    /// # Errors
    /// [`InvalidSampling`] naming the setting that is out of range.
    pub fn validate(&self) -> Result<(), InvalidSampling> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(InvalidSampling(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(InvalidSampling("top-k must be at least 1".into()));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(InvalidSampling(format!("top-p must be in (0, 1], got {p}")));
        }
        Ok(())
    }

    /// Writes into `out` the probability of every token (zero outside the kept set).
    ///
    /// Greedy gives a point mass on the argmax. Otherwise: softmax of `logits / temperature`,
    /// restricted to the top-k tokens, then to the top-p nucleus, renormalised. Ties at the
    /// top-k / top-p boundary are broken by the lower token id, so the result is deterministic.
    pub fn distribution(&self, logits: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.resize(logits.len(), 0.0);
        if logits.is_empty() {
            return;
        }
        if self.is_greedy() {
            out[argmax(logits)] = 1.0;
            return;
        }
        let inv_t = 1.0 / self.temperature as f64;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut total = 0.0f64;
        for (o, &l) in out.iter_mut().zip(logits) {
            let e = ((l as f64 - max) * inv_t).exp();
            *o = e as f32;
            total += e;
        }
        for o in out.iter_mut() {
            *o = (*o as f64 / total) as f32;
        }
        let vocab = logits.len();
        let k = self.top_k.unwrap_or(vocab).min(vocab);
        let p = self.top_p.unwrap_or(1.0);
        if k == vocab && p >= 1.0 {
            return;
        }
        let keep = nucleus(out, k, p);
        let mut mass = 0.0f64;
        let mut kept = vec![false; vocab];
        for &i in &keep {
            kept[i] = true;
            mass += out[i] as f64;
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = if kept[i] {
                (*o as f64 / mass) as f32
            } else {
                0.0
            };
        }
    }
}

/// The tokens kept by top-k then top-p, most likely first. Sorts only as much as needed: the
/// nucleus is usually a few hundred tokens out of tens of thousands.
fn nucleus(probs: &[f32], k: usize, p: f32) -> Vec<usize> {
    let order = |a: &usize, b: &usize| probs[*b].total_cmp(&probs[*a]).then(a.cmp(b));
    let mut width = 256.min(k);
    loop {
        let mut ids: Vec<usize> = (0..probs.len()).collect();
        if width < ids.len() {
            ids.select_nth_unstable_by(width - 1, order);
            ids.truncate(width);
        }
        ids.sort_unstable_by(order);
        let mut cumulative = 0.0f64;
        for (n, &i) in ids.iter().enumerate() {
            cumulative += probs[i] as f64;
            if cumulative >= p as f64 {
                ids.truncate(n + 1);
                return ids;
            }
        }
        if width >= k {
            return ids;
        }
        width = (width * 4).min(k);
    }
}

/// Index of the largest logit, the first one on ties.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// A seeded source of randomness for sampling: the same seed gives the same output.
#[derive(Debug, Clone)]
pub struct Sampler {
    rng: ChaCha12Rng,
}

impl Sampler {
    /// A sampler seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Sampler {
            rng: ChaCha12Rng::seed_from_u64(seed),
        }
    }

    /// A uniform number in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// Draws a token from `probs` (which need not be normalised). Returns `None` when every
    /// probability is zero.
    pub fn draw(&mut self, probs: &[f32]) -> Option<usize> {
        let total: f64 = probs.iter().map(|&x| x.max(0.0) as f64).sum();
        if total <= 0.0 {
            return None;
        }
        let target = self.uniform() * total;
        let mut cumulative = 0.0f64;
        let mut last_positive = None;
        for (i, &x) in probs.iter().enumerate() {
            if x > 0.0 {
                cumulative += x as f64;
                last_positive = Some(i);
                if target < cumulative {
                    return Some(i);
                }
            }
        }
        // Rounding left the target just above the sum: the last token with mass takes it.
        last_positive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> SamplingConfig {
        SamplingConfig {
            temperature,
            top_k,
            top_p,
        }
    }

    #[test]
    fn greedy_is_a_point_mass_on_the_first_maximum() {
        let mut d = Vec::new();
        SamplingConfig::greedy().distribution(&[0.5, 2.0, 2.0, -1.0], &mut d);
        assert_eq!(d, vec![0.0, 1.0, 0.0, 0.0]);
        cfg(0.8, Some(1), None).distribution(&[0.5, 2.0, 3.0], &mut d);
        assert_eq!(d, vec![0.0, 0.0, 1.0]);
    }

    #[test]
    fn temperature_one_is_the_softmax() {
        let mut d = Vec::new();
        cfg(1.0, None, None).distribution(&[0.0, 1.0f32.ln(), 2.0f32.ln()], &mut d);
        // exp: 1, 1, 2 -> 0.25, 0.25, 0.5
        for (a, b) in d.iter().zip([0.25, 0.25, 0.5]) {
            assert!((a - b).abs() < 1e-6, "{d:?}");
        }
    }

    #[test]
    fn top_k_and_top_p_keep_the_head_and_renormalise() {
        let logits: Vec<f32> = [0.4f32, 0.3, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        let mut d = Vec::new();
        cfg(1.0, Some(2), None).distribution(&logits, &mut d);
        assert!((d[0] - 0.4 / 0.7).abs() < 1e-6 && (d[1] - 0.3 / 0.7).abs() < 1e-6);
        assert_eq!(&d[2..], &[0.0, 0.0]);
        // Nucleus 0.65: 0.4 + 0.3 reaches it.
        cfg(1.0, None, Some(0.65)).distribution(&logits, &mut d);
        assert!((d[0] - 0.4 / 0.7).abs() < 1e-6 && d[2] == 0.0);
        // Nucleus 0.4 exactly: the top token alone.
        cfg(1.0, None, Some(0.4)).distribution(&logits, &mut d);
        assert!((d[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn nucleus_widens_past_its_first_guess() {
        // 1000 equal tokens: top-p 0.9 needs 900 of them, more than the first 256 looked at.
        let logits = vec![0.0f32; 1000];
        let mut d = Vec::new();
        cfg(1.0, None, Some(0.9)).distribution(&logits, &mut d);
        assert_eq!(d.iter().filter(|&&x| x > 0.0).count(), 900);
        // Ties broken by lower id.
        assert!(d[0] > 0.0 && d[899] > 0.0 && d[900] == 0.0);
    }

    #[test]
    fn validation_names_the_bad_setting() {
        assert!(
            cfg(-1.0, None, None)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
        assert!(
            cfg(1.0, Some(0), None)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("top-k")
        );
        assert!(
            cfg(1.0, None, Some(1.5))
                .validate()
                .unwrap_err()
                .to_string()
                .contains("top-p")
        );
        assert!(cfg(0.7, Some(40), Some(0.9)).validate().is_ok());
    }

    #[test]
    fn draws_are_reproducible_and_follow_the_distribution() {
        let probs = [0.1f32, 0.0, 0.6, 0.3];
        let draws = |seed| {
            let mut s = Sampler::new(seed);
            (0..2000)
                .map(|_| s.draw(&probs).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        let d = draws(7);
        assert!(!d.contains(&1), "a zero-probability token was drawn");
        // Generous bound: 2000 draws, standard deviation of the count of token 2 is ~22.
        let twos = d.iter().filter(|&&t| t == 2).count();
        assert!((1080..1320).contains(&twos), "{twos}");
        assert_eq!(Sampler::new(1).draw(&[0.0, 0.0]), None);
    }
}
