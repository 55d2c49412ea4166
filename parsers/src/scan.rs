//! Marker scanning shared by every format, and the one loop that drives a state machine
//! over text.
//!
//! Each state of a parser names the markers it is looking for. [`Feeder`] finds the
//! earliest of them, hands the text before it and the marker to the machine, and keeps
//! back only the longest suffix that could still begin one of the current state's
//! markers. That suffix is all the feeder ever buffers, so per-chunk work is proportional
//! to the chunk, never to the output so far.

use crate::event::Sink;

/// What a machine wants after seeing a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The marker is used up; scanning resumes after it.
    Consume,
    /// The marker belongs to the next state: scan it again from its start.
    Rescan,
}

/// A state machine driven by markers.
pub(crate) trait MarkerMachine {
    /// The markers the current state reacts to.
    fn markers(&self) -> &'static [&'static str];
    /// Text between markers, in the current state.
    fn text(&mut self, text: &str, sink: &mut dyn Sink);
    /// The marker `markers()[which]` was found.
    fn marker(&mut self, which: usize, sink: &mut dyn Sink) -> Step;
}

/// Finds the earliest occurrence of any marker; on a tie the longest marker wins.
/// Returns `(byte position, marker index)`.
pub(crate) fn find_first(hay: &str, markers: &[&str]) -> Option<(usize, usize)> {
    let bytes = hay.as_bytes();
    let mut firsts = [0u8; 3];
    let mut n = 0;
    for m in markers {
        let b = m.as_bytes()[0];
        if !firsts[..n].contains(&b) {
            if n == 3 {
                return find_first_slow(hay, markers);
            }
            firsts[n] = b;
            n += 1;
        }
    }
    let check = |pos: usize| -> Option<(usize, usize)> {
        let rest = &bytes[pos..];
        let mut best: Option<usize> = None;
        for (i, m) in markers.iter().enumerate() {
            if rest.starts_with(m.as_bytes()) && best.is_none_or(|b| markers[b].len() < m.len()) {
                best = Some(i);
            }
        }
        best.map(|i| (pos, i))
    };
    match n {
        0 => None,
        1 => memchr::memchr_iter(firsts[0], bytes).find_map(check),
        2 => memchr::memchr2_iter(firsts[0], firsts[1], bytes).find_map(check),
        _ => memchr::memchr3_iter(firsts[0], firsts[1], firsts[2], bytes).find_map(check),
    }
}

fn find_first_slow(hay: &str, markers: &[&str]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (i, m) in markers.iter().enumerate() {
        if let Some(p) = memchr::memmem::find(hay.as_bytes(), m.as_bytes()) {
            let better = match best {
                None => true,
                Some((bp, bi)) => p < bp || (p == bp && m.len() > markers[bi].len()),
            };
            if better {
                best = Some((p, i));
            }
        }
    }
    best
}

/// Length of the longest suffix of `hay` that is a proper prefix of some marker, starting
/// on a char boundary. Those bytes must be held back until more text decides them.
pub(crate) fn partial_suffix(hay: &str, markers: &[&str]) -> usize {
    let bytes = hay.as_bytes();
    let longest = markers.iter().map(|m| m.len()).max().unwrap_or(0);
    if longest < 2 || bytes.is_empty() {
        return 0;
    }
    let from = bytes.len().saturating_sub(longest - 1);
    for start in from..bytes.len() {
        // Most positions cannot begin any marker: check the first byte before the rest.
        let b = bytes[start];
        if !markers.iter().any(|m| m.as_bytes()[0] == b) {
            continue;
        }
        let rest = &bytes[start..];
        if markers
            .iter()
            .any(|m| m.len() > rest.len() && m.as_bytes().starts_with(rest))
            && hay.is_char_boundary(start)
        {
            return bytes.len() - start;
        }
    }
    0
}

/// Runs a machine over `input`; returns where the held-back suffix begins. At the end of
/// the output (`at_end`) nothing is held: every marker found is final and the rest is text.
fn drive<M: MarkerMachine>(machine: &mut M, input: &str, at_end: bool, sink: &mut dyn Sink) -> usize {
    let mut pos = 0;
    loop {
        let markers = machine.markers();
        let rest = &input[pos..];
        match find_first(rest, markers) {
            Some((at, which)) => {
                // A longer marker that starts at or before this one may still be completed
                // by the next bytes (`\n<answer>\n` around `<answer>`, `<think>\n` of
                // `<think>`): wait for them to say which.
                if !at_end {
                    let hold = rest.len() - partial_suffix(rest, markers);
                    if hold <= at {
                        machine.text(&rest[..hold], sink);
                        return pos + hold;
                    }
                }
                machine.text(&rest[..at], sink);
                match machine.marker(which, sink) {
                    Step::Consume => pos += at + markers[which].len(),
                    Step::Rescan => pos += at,
                }
            }
            None => {
                let keep = if at_end { 0 } else { partial_suffix(rest, markers) };
                let end = rest.len() - keep;
                machine.text(&rest[..end], sink);
                return pos + end;
            }
        }
    }
}

/// Feeds chunks to a [`MarkerMachine`], holding back only a possible partial marker.
#[derive(Debug, Default)]
pub(crate) struct Feeder {
    held: String,
}

impl Feeder {
    /// Feeds one chunk. The chunk is scanned in place unless bytes are held from before.
    pub(crate) fn push<M: MarkerMachine>(&mut self, machine: &mut M, chunk: &str, sink: &mut dyn Sink) {
        if self.held.is_empty() {
            let keep = drive(machine, chunk, false, sink);
            self.held.push_str(&chunk[keep..]);
        } else {
            self.held.push_str(chunk);
            let held = std::mem::take(&mut self.held);
            let keep = drive(machine, &held, false, sink);
            self.held = held;
            self.held.drain(..keep);
        }
    }

    /// Ends the output: held bytes are read for the last time, a marker that was waiting
    /// for longer spellings taken as it is, a partial one as text.
    pub(crate) fn flush<M: MarkerMachine>(&mut self, machine: &mut M, sink: &mut dyn Sink) {
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            drive(machine, &held, true, sink);
            self.held = held;
            self.held.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_marker_wins_and_ties_go_to_the_longest() {
        assert_eq!(
            find_first("ab</think>c<think>", &["<think>", "</think>"]),
            Some((2, 1))
        );
        assert_eq!(
            find_first("x<tool_call>", &["<tool", "<tool_call>"]),
            Some((1, 1))
        );
        assert_eq!(find_first("plain", &["<think>"]), None);
        // More than three distinct first bytes takes the slow path with the same answer.
        assert_eq!(find_first("..c..b", &["a", "b", "c", "d"]), Some((2, 2)));
    }

    #[test]
    fn holds_only_a_possible_marker_prefix() {
        assert_eq!(partial_suffix("text</thi", &["</think>"]), 5);
        assert_eq!(partial_suffix("text<", &["</think>", "<think>"]), 1);
        assert_eq!(partial_suffix("text</x", &["</think>"]), 0);
        assert_eq!(partial_suffix("a\u{ff5c}<\u{ff5c}", &["<\u{ff5c}tool"]), 4);
        assert_eq!(partial_suffix("", &["<a>"]), 0);
    }
}
