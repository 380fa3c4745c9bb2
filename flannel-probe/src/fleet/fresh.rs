//! When the agent takes the readings `GET /counters?fresh=1` asks for.
//!
//! `mesh` compares one node's sent count with another node's received
//! count, so the readings it asks every agent for at once must be taken at
//! about the same instant on every node. A limited request is therefore
//! deferred by a short, fixed spacing counted from the start of the last
//! extra reading (the same on every node, so readings that were aligned stay
//! aligned however long each node took), never pushed to the next scheduled
//! reading, whose phase differs from node to node.
//!
//! The agent's time is bounded by a budget, not by a gap that grows with
//! each reading's cost: a gap that depends on cost differs from node to node
//! (a loaded node reads slower), so a second `mesh` asking just after a first
//! one was answered at different instants on every node. Each extra reading
//! spends [`COST_SHARE`] times its length of a virtual clock that may run at
//! most [`BURST`] ahead of real time; once it does, requests wait until it
//! is back within. Over any stretch of time, extra readings take at most a
//! quarter of it plus a quarter of `BURST` (and the one reading in progress),
//! whatever the clients do.
use std::time::{Duration, Instant};

/// Extra readings start at least this far apart (at most 10 per second).
pub(crate) const MIN_SPACING: Duration = Duration::from_millis(100);
/// An extra reading of length `t` spends `COST_SHARE * t` of the budget:
/// a quarter of the agent's time in the long run.
const COST_SHARE: u32 = 4;
/// How far the budget may run ahead of real time: a few costly readings in
/// a row (a `mesh` asks twice, two at once four times) keep the spacing.
const BURST: Duration = Duration::from_secs(2);

/// The extra-reading schedule: which requests wait, and until when.
#[derive(Debug, Default)]
pub(crate) struct FreshPacer {
    /// The earliest start of the next extra reading by the spacing.
    spaced_until: Option<Instant>,
    /// The budget's virtual clock: extra readings so far have spent it up
    /// to this instant (`COST_SHARE` times their length, back to back).
    spent_until: Option<Instant>,
    /// A request no reading has answered yet: when it arrived.
    pending_since: Option<Instant>,
}

impl FreshPacer {
    /// The earliest instant an extra reading may start.
    fn next_allowed(&self) -> Option<Instant> {
        let budget = self.spent_until.and_then(|t| t.checked_sub(BURST));
        match (self.spaced_until, budget) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// A request for a reading taken after `now`: true when it may be taken
    /// at once; otherwise it waits for [`Self::due`] (or any reading that
    /// starts before then).
    pub(crate) fn ask(&mut self, now: Instant) -> bool {
        if self.next_allowed().is_none_or(|t| now >= t) {
            return true;
        }
        self.pending_since.get_or_insert(now);
        false
    }

    /// When the deferred reading is to be taken, if one is waiting.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.pending_since.and(self.next_allowed())
    }

    /// A reading ran from `started` to `finished`. It answers every request
    /// that arrived before it started; an extra one (asked for, not
    /// scheduled) spends the budget and starts the spacing.
    pub(crate) fn read(&mut self, started: Instant, finished: Instant, extra: bool) {
        if self.pending_since.is_some_and(|p| p <= started) {
            self.pending_since = None;
        }
        if extra {
            let cost = finished.saturating_duration_since(started) * COST_SHARE;
            let from = self.spent_until.map_or(started, |t| t.max(started));
            self.spent_until = Some(from + cost);
            self.spaced_until = Some(finished.max(started + MIN_SPACING));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, v: u64) -> Instant {
        t0 + Duration::from_millis(v)
    }

    #[test]
    fn the_first_request_reads_at_once_and_the_next_waits_the_spacing() {
        let t0 = Instant::now();
        let mut p = FreshPacer::default();
        assert!(p.ask(t0));
        assert_eq!(p.due(), None);
        p.read(t0, ms(t0, 10), true);
        // 30 ms later: deferred to 100 ms after the reading started.
        assert!(!p.ask(ms(t0, 40)));
        assert_eq!(p.due(), Some(ms(t0, 100)));
        // More requests share the one deferred reading.
        assert!(!p.ask(ms(t0, 60)));
        assert_eq!(p.due(), Some(ms(t0, 100)));
        p.read(ms(t0, 110), ms(t0, 120), true);
        assert_eq!(p.due(), None);
        // Past the spacing: at once again.
        assert!(p.ask(ms(t0, 300)));
    }

    #[test]
    fn a_scheduled_reading_answers_waiting_requests_without_moving_the_spacing() {
        let t0 = Instant::now();
        let mut p = FreshPacer::default();
        assert!(p.ask(t0));
        p.read(t0, ms(t0, 10), true);
        assert!(!p.ask(ms(t0, 20)));
        // The tick came first and started after the request: answered.
        p.read(ms(t0, 50), ms(t0, 60), false);
        assert_eq!(p.due(), None);
        // Scheduled readings do not count against the extra ones.
        assert!(!p.ask(ms(t0, 70)));
        assert_eq!(p.due(), Some(ms(t0, 100)));
    }

    #[test]
    fn a_reading_that_started_before_the_request_does_not_answer_it() {
        let t0 = Instant::now();
        let mut p = FreshPacer::default();
        assert!(p.ask(t0));
        p.read(t0, ms(t0, 10), true);
        assert!(!p.ask(ms(t0, 50)));
        p.read(ms(t0, 40), ms(t0, 55), false);
        assert_eq!(p.due(), Some(ms(t0, 100)));
    }

    #[test]
    fn costly_readings_keep_the_spacing_from_their_start_until_the_budget_is_spent() {
        let t0 = Instant::now();
        let mut p = FreshPacer::default();
        assert!(p.ask(t0));
        // A 60 ms reading: the next may start 100 ms after this one started,
        // not after it ended, so nodes that read at the same instant but at
        // different speeds read the deferred request at the same instant too.
        p.read(t0, ms(t0, 60), true);
        assert!(!p.ask(ms(t0, 70)));
        assert_eq!(p.due(), Some(ms(t0, 100)));
        // A reading longer than the spacing: the next may follow it at once.
        p.read(ms(t0, 100), ms(t0, 250), true);
        assert!(p.ask(ms(t0, 250)));
        // 210 ms of readings spent 840 ms of the 2 s budget; two more of
        // 300 ms overrun it: the next waits until the budget is within.
        p.read(ms(t0, 250), ms(t0, 550), true);
        p.read(ms(t0, 550), ms(t0, 850), true);
        // Spent until 0 + 4 * (60 + 150 + 300 + 300) ms = 3240 ms.
        assert!(!p.ask(ms(t0, 900)));
        assert_eq!(p.due(), Some(ms(t0, 1240)));
    }

    #[test]
    fn over_any_stretch_extra_readings_take_at_most_a_quarter_of_it() {
        let t0 = Instant::now();
        let mut p = FreshPacer::default();
        // A client asking without pause for readings of 200 ms each.
        let mut now = t0;
        let mut busy = Duration::ZERO;
        for _ in 0..100 {
            if !p.ask(now) {
                now = p.due().expect("deferred");
            }
            p.read(now, now + Duration::from_millis(200), true);
            busy += Duration::from_millis(200);
            now += Duration::from_millis(201);
        }
        let span = now.duration_since(t0);
        // A quarter of the stretch, a quarter of the burst, and the last
        // reading, whose cost is known only once it has run.
        let last = Duration::from_millis(200);
        assert!(busy <= (span + BURST) / 4 + last, "{busy:?} of {span:?}");
        // And it did use its quarter: not throttled to far less.
        assert!(busy * 5 >= span, "{busy:?} of {span:?}");
    }
}
