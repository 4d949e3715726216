//! Choosing the egress source for a delivery within an IP pool.
//!
//! Each delivery to a site takes one source of the pool, weighted, among the sources that could send
//! to that site right now: not suspended for it, and not at a limit (rate, connections). A source at
//! its limit never holds back the others; only when every source is at a limit does the delivery go to
//! the one that frees up soonest.
//!
//! The weighting is nginx's smooth weighted round robin: every pick adds each available source's weight
//! to its running score, takes the highest score, and subtracts the total weight from the winner. With
//! nothing binding, weights 1:3 give exactly one and three picks in every four, interleaved (B B A B)
//! rather than in runs.

/// One source of the pool, as seen for one destination site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The source's share of the pool's traffic (relative to the others).
    pub weight: u32,
    /// `None` = suspended for this site; `Some(t)` = the earliest time this source's queue for the site
    /// could send one more message (from [`super::Gcra::backlog_eta_us`] and connection caps).
    pub available_at_us: Option<u64>,
}

/// Smooth weighted round robin state of one (pool, site).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmoothWeighted {
    /// Running score per candidate, in the order of the candidate list; reset when its length changes.
    current: Vec<i64>,
}

impl SmoothWeighted {
    /// The index of the source that should take the next delivery at `now_us`.
    ///
    /// Among the candidates available at `now_us`: smooth weighted round robin (ties go to the lower
    /// index). If none is available now: the one available soonest (ties: higher weight, then lower
    /// index); the scores are left alone, since that pick is forced. `None` when all are suspended (or
    /// the list is empty). A candidate list of a different length than last time resets the scores.
    pub fn select(&mut self, candidates: &[Candidate], now_us: u64) -> Option<usize> {
        if self.current.len() != candidates.len() {
            self.current = vec![0; candidates.len()];
        }
        let available = |c: &Candidate| c.available_at_us.is_some_and(|at| at <= now_us);
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (index, candidate) in candidates.iter().enumerate() {
            if !available(candidate) {
                continue;
            }
            let weight = i64::from(candidate.weight);
            total = total.saturating_add(weight);
            self.current[index] = self.current[index].saturating_add(weight);
            if best.is_none_or(|b| self.current[index] > self.current[b]) {
                best = Some(index);
            }
        }
        if let Some(chosen) = best {
            self.current[chosen] = self.current[chosen].saturating_sub(total);
            return Some(chosen);
        }
        soonest(candidates)
    }
}

/// The candidate available soonest: earliest time, then higher weight, then lower index.
fn soonest(candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter_map(|(index, c)| c.available_at_us.map(|at| (at, c.weight, index)))
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)))
        .map(|(_, _, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(weight: u32) -> Candidate {
        Candidate {
            weight,
            available_at_us: Some(0),
        }
    }

    fn at(weight: u32, at_us: u64) -> Candidate {
        Candidate {
            weight,
            available_at_us: Some(at_us),
        }
    }

    fn suspended(weight: u32) -> Candidate {
        Candidate {
            weight,
            available_at_us: None,
        }
    }

    fn counts(state: &mut SmoothWeighted, candidates: &[Candidate], picks: usize, now: u64) -> Vec<usize> {
        let mut counts = vec![0; candidates.len()];
        for _ in 0..picks {
            if let Some(index) = state.select(candidates, now) {
                counts[index] += 1;
            }
        }
        counts
    }

    #[test]
    fn weights_one_to_three_split_exactly() {
        let candidates = [ready(1), ready(3)];
        let mut state = SmoothWeighted::default();
        // Every group of four picks holds exactly one A and three Bs, interleaved.
        let first: Vec<_> = (0..4).filter_map(|_| state.select(&candidates, 10)).collect();
        assert_eq!(first, [1, 0, 1, 1]);
        for group in 0..99 {
            assert_eq!(counts(&mut state, &candidates, 4, 10), [1, 3], "group {group}");
        }
        let mut fresh = SmoothWeighted::default();
        assert_eq!(counts(&mut fresh, &candidates, 400, 10), [100, 300]);
    }

    #[test]
    fn selection_table() {
        let now = 1_000;
        // (candidates, expected pick at `now` from a fresh state, case)
        let table: Vec<(Vec<Candidate>, Option<usize>, &str)> = vec![
            (vec![], None, "empty pool"),
            (vec![suspended(1), suspended(5)], None, "all suspended"),
            (
                vec![at(9, 5_000), ready(1)],
                Some(1),
                "at limit gets nothing while another is available",
            ),
            (vec![suspended(9), at(1, now)], Some(1), "available exactly now"),
            (
                vec![at(1, 3_000), at(1, 2_000), suspended(1)],
                Some(1),
                "all at limit: the soonest",
            ),
            (
                vec![at(1, 2_000), at(4, 2_000)],
                Some(1),
                "tie on time: higher weight",
            ),
            (
                vec![at(4, 2_000), at(4, 2_000)],
                Some(0),
                "tie on time and weight: lower index",
            ),
            (vec![ready(0), ready(0)], Some(0), "zero weights: lower index"),
        ];
        for (candidates, expected, case) in table {
            let mut state = SmoothWeighted::default();
            assert_eq!(state.select(&candidates, now), expected, "{case}");
        }
    }

    #[test]
    fn a_source_at_its_limit_never_holds_back_the_others() {
        let mut state = SmoothWeighted::default();
        let limited = [at(1, 10_000), ready(1), ready(2)];
        assert_eq!(counts(&mut state, &limited, 300, 5_000), [0, 100, 200]);
        // Once it frees up it takes its share again.
        let all = [ready(1), ready(1), ready(2)];
        assert_eq!(counts(&mut state, &all, 400, 20_000), [100, 100, 200]);
    }

    #[test]
    fn list_length_change_resets_and_huge_weights_do_not_overflow() {
        let mut state = SmoothWeighted::default();
        state.select(&[ready(1), ready(3)], 0);
        assert_eq!(state.select(&[ready(5), ready(1), ready(1)], 0), Some(0));
        assert_eq!(state.current.len(), 3);
        let huge = [ready(u32::MAX), ready(u32::MAX), ready(1)];
        let got = counts(&mut state, &huge, 1_000, 0);
        assert_eq!(got.iter().sum::<usize>(), 1_000);
        assert!(got[0] >= 499 && got[1] >= 499);
    }
}
