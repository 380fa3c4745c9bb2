//! When the agent takes the readings `GET /counters?fresh=1` asks for.
//!
//! `mesh` compares one node's sent count with another node's received
//! count, so the readings it asks every agent for at once must be taken at
//! about the same instant on every node. A limited request is therefore
//! deferred by a short, fixed spacing (the same on every node, so readings
//! that were aligned stay aligned), never pushed to the next scheduled
//! reading, whose phase differs from node to node. The spacing also grows
//! with the cost of a reading, so extra readings never take more than a
//! quarter of the agent's time, whatever the clients do.
use std::time::{Duration, Instant};

/// Extra readings are at least this far apart (at most 10 per second).
pub(crate) const MIN_SPACING: Duration = Duration::from_millis(100);
/// The gap after an extra reading is at least this many times its length.
const COST_FACTOR: u32 = 3;

/// The extra-reading schedule: which requests wait, and until when.
#[derive(Debug, Default)]
pub(crate) struct FreshPacer {
    /// The earliest instant of the next extra reading.
    next_allowed: Option<Instant>,
    /// A request no reading has answered yet: when it arrived.
    pending_since: Option<Instant>,
}

impl FreshPacer {
    /// A request for a reading taken after `now`: true when it may be taken
    /// at once; otherwise it waits for [`Self::due`] (or any reading that
    /// starts before then).
    pub(crate) fn ask(&mut self, now: Instant) -> bool {
        if self.next_allowed.is_none_or(|t| now >= t) {
            return true;
        }
        self.pending_since.get_or_insert(now);
        false
    }

    /// When the deferred reading is to be taken, if one is waiting.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.pending_since.and(self.next_allowed)
    }

    /// A reading ran from `started` to `finished`. It answers every request
    /// that arrived before it started; an extra one (asked for, not
    /// scheduled) pushes the next extra one back.
    pub(crate) fn read(&mut self, started: Instant, finished: Instant, extra: bool) {
        if self.pending_since.is_some_and(|p| p <= started) {
            self.pending_since = None;
        }
        if extra {
            let gap = MIN_SPACING.max(finished.saturating_duration_since(started) * COST_FACTOR);
            self.next_allowed = Some(finished + gap);
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
        // 30 ms later: deferred to 100 ms after the reading ended.
        assert!(!p.ask(ms(t0, 40)));
        assert_eq!(p.due(), Some(ms(t0, 110)));
        // More requests share the one deferred reading.
        assert!(!p.ask(ms(t0, 60)));
        assert_eq!(p.due(), Some(ms(t0, 110)));
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
        assert_eq!(p.due(), Some(ms(t0, 110)));
    }

    #[test]
    fn a_reading_that_started_before_the_request_does_not_answer_it() {
        let t0 = Instant::now();
        let mut p = FreshPacer::default();
        assert!(p.ask(t0));
        p.read(t0, ms(t0, 10), true);
        assert!(!p.ask(ms(t0, 50)));
        p.read(ms(t0, 40), ms(t0, 55), false);
        assert_eq!(p.due(), Some(ms(t0, 110)));
    }

    #[test]
    fn costly_readings_are_spaced_by_three_times_their_length() {
        let t0 = Instant::now();
        let mut p = FreshPacer::default();
        assert!(p.ask(t0));
        // A 200 ms reading: the next extra one no sooner than 600 ms after.
        p.read(t0, ms(t0, 200), true);
        assert!(!p.ask(ms(t0, 300)));
        assert_eq!(p.due(), Some(ms(t0, 800)));
        // Over any stretch, extra readings take at most a quarter of it.
        let mut now = ms(t0, 800);
        let mut busy = Duration::ZERO;
        for _ in 0..50 {
            if !p.ask(now) {
                now = p.due().expect("deferred");
            }
            p.read(now, now + Duration::from_millis(200), true);
            busy += Duration::from_millis(200);
            now += Duration::from_millis(201);
        }
        let span = now.duration_since(ms(t0, 800));
        assert!(
            busy * 4 <= span + Duration::from_millis(800),
            "{busy:?} of {span:?}"
        );
    }
}
