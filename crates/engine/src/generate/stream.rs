//! Incremental text output with stop strings: text is released only once it can no longer turn into
//! the start of a stop string.

/// Accumulates generated text and decides what may be shown.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    text: String,
    emitted: usize,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            emitted: 0,
        }
    }

    /// Replaces the whole decoded text so far. Returns the newly releasable part and whether a stop
    /// string was hit (the text is then cut before it).
    pub fn update(&mut self, full: &str) -> (String, bool) {
        self.text = full.to_string();
        if let Some(pos) = self
            .stops
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
        {
            self.text.truncate(pos);
            let out = self.text.get(self.emitted..).unwrap_or("").to_string();
            self.emitted = self.text.len();
            return (out, true);
        }
        // Hold back a suffix that is a prefix of some stop string, and an incomplete UTF-8 char.
        let mut safe = self.text.len();
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if s.is_char_boundary(k) && self.text.ends_with(&s[..k]) {
                    safe = safe.min(self.text.len() - k);
                    break;
                }
            }
        }
        if self.text[..safe].ends_with('\u{FFFD}') {
            safe -= '\u{FFFD}'.len_utf8();
        }
        if safe <= self.emitted {
            return (String::new(), false);
        }
        let out = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        (out, false)
    }

    /// Releases whatever is held back (at the end of generation).
    pub fn finish(&mut self) -> String {
        let out = self.text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = self.text.len();
        out
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_possible_stop_prefix() {
        let mut m = StopMatcher::new(&["\n\n".to_string()]);
        assert_eq!(m.update("Hello"), ("Hello".to_string(), false));
        assert_eq!(m.update("Hello\n"), (String::new(), false));
        assert_eq!(m.update("Hello\nworld"), ("\nworld".to_string(), false));
        assert_eq!(m.update("Hello\nworld\n\nmore"), (String::new(), true));
        assert_eq!(m.text(), "Hello\nworld");
    }

    #[test]
    fn releases_everything_without_stops() {
        let mut m = StopMatcher::new(&[]);
        assert_eq!(m.update("a").0, "a");
        assert_eq!(m.update("ab").0, "b");
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn finish_flushes_held_text() {
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.update("xEN").0, "x");
        assert_eq!(m.finish(), "EN");
    }
}
