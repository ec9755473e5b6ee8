//! Streaming text out of a generation: stop strings found across token boundaries without
//! ever showing part of one.

/// Watches streamed text for stop strings.
///
/// Text that could be the start of a stop string is held back until it is clear that it is
/// not; when a stop string appears, everything before it is released and the stream ends.
#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    pending: String,
    stopped: bool,
}

impl StopStrings {
    /// Watches for `stops` (empty strings are ignored).
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        StopStrings {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
            stopped: false,
        }
    }

    /// Feeds newly decoded text; returns the text that can be shown now. After a stop string
    /// is found, [`StopStrings::stopped`] is true and nothing more is returned.
    pub fn push(&mut self, text: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.pending.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            self.stopped = true;
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return out;
        }
        // Hold back the longest tail that begins some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&n| s.is_char_boundary(n))
                    .map(move |n| &s[..n])
            })
            .filter(|prefix| self.pending.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        out
    }

    /// Whether a stop string was found.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The text still held back (call when the stream ends without a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], chunks: &[&str]) -> (String, bool) {
        let mut s = StopStrings::new(stops.iter().map(|s| s.to_string()));
        let mut out = String::new();
        for c in chunks {
            out += &s.push(c);
        }
        if !s.stopped() {
            out += &s.finish();
        }
        (out, s.stopped())
    }

    #[test]
    fn a_stop_split_across_chunks_is_found_and_never_shown() {
        assert_eq!(
            run(&["\nUser:"], &["Hello", " there\nUs", "er: more"]),
            ("Hello there".into(), true)
        );
        assert_eq!(run(&["END"], &["aE", "N", "D", "x"]), ("a".into(), true));
    }

    #[test]
    fn held_back_text_is_released_when_it_turns_out_not_to_be_a_stop() {
        let mut s = StopStrings::new(["END".to_string()]);
        assert_eq!(s.push("abE"), "ab");
        assert_eq!(s.push("x"), "Ex");
        assert_eq!(run(&["END"], &["foo E"]), ("foo E".into(), false));
    }

    #[test]
    fn multibyte_stops_and_no_stops() {
        assert_eq!(run(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&[""], &["a"]), ("a".into(), false));
    }
}
