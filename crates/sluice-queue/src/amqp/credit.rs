//! A job consumer's prefetch when messages may be packs. The broker counts
//! messages, and a message may hold up to `pack_jobs` jobs: counted in
//! messages alone, a worker with a prefetch of 85 could hold 85 packs,
//! 1,360 jobs, and take a whole batch while a newly started worker idles.
//!
//! So a slot of the prefetch holds up to [`SLOT_JOBS`] jobs on average: the
//! prefetch asked of the broker follows the jobs per message seen. A
//! consumer starts as if every message were a full pack, asks for more
//! slots as smaller messages come (up to the prefetch itself, for single
//! jobs), and for fewer again when packs come back.

/// The jobs one slot of the prefetch may hold on average. More than one,
/// so that a worker fed packs keeps its batches full (in the throughput
/// bench, one job per slot cost a third of the jobs finished per second);
/// far fewer than a full pack.
pub(super) const SLOT_JOBS: u16 = 4;

/// How much of each new message moves the average (1/8).
const WEIGHT: f64 = 0.125;

#[derive(Debug)]
pub(super) struct Credit {
    /// The prefetch configured, in messages of one job.
    prefetch: u16,
    /// The prefetch in messages asked of the broker now.
    messages: u16,
    /// Jobs per message, a moving average of what came.
    per_message: f64,
}

impl Credit {
    /// A prefetch of `prefetch` slots, for messages of up to `pack_jobs` jobs.
    pub(super) fn new(prefetch: u16, pack_jobs: usize) -> Self {
        let prefetch = prefetch.max(1);
        let pack = u16::try_from(pack_jobs.max(1)).unwrap_or(u16::MAX);
        let mut credit = Self {
            prefetch,
            messages: prefetch,
            per_message: f64::from(pack),
        };
        credit.messages = credit.want();
        credit
    }

    /// The prefetch in messages to ask for now.
    pub(super) fn messages(&self) -> u16 {
        self.messages
    }

    /// The jobs the consumer may hold.
    #[cfg(test)]
    fn jobs(&self) -> u32 {
        u32::from(self.prefetch) * u32::from(SLOT_JOBS)
    }

    fn want(&self) -> u16 {
        let want = (f64::from(self.prefetch) * f64::from(SLOT_JOBS) / self.per_message)
            .ceil()
            .clamp(1.0, f64::from(self.prefetch));
        // In range of u16 by the clamp.
        want as u16
    }

    /// Records a message of `jobs` jobs. Answers the prefetch in messages
    /// to ask for instead: more once it is short by half (or can reach the
    /// whole prefetch), fewer once it is twice too many. Not at every
    /// wobble: each change is a new subscription.
    pub(super) fn record(&mut self, jobs: usize) -> Option<u16> {
        let jobs = jobs.max(1) as f64;
        self.per_message += WEIGHT * (jobs - self.per_message);
        let want = self.want();
        let (now, wanted) = (u32::from(self.messages), u32::from(want));
        let more = wanted > now && (wanted * 2 >= now * 3 || want == self.prefetch);
        let fewer = wanted * 2 <= now;
        if more || fewer {
            self.messages = want;
            Some(want)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jobs a consumer may hold: its prefetch in messages times the
    /// jobs in each.
    fn held(credit: &Credit, per_message: u16) -> u32 {
        u32::from(credit.messages()) * u32::from(per_message)
    }

    #[test]
    fn a_fresh_consumer_holds_its_jobs_in_full_packs_not_a_pack_per_slot() {
        let credit = Credit::new(85, 16);
        assert_eq!(credit.messages(), 22);
        assert_eq!(credit.jobs(), 340);
        assert!(held(&credit, 16) <= credit.jobs() + 15);
        // One job per message: the prefetch as configured.
        assert_eq!(Credit::new(256, 1).messages(), 256);
        assert_eq!(Credit::new(256, 4).messages(), 256);
        assert_eq!(Credit::new(1, 16).messages(), 1);
    }

    #[test]
    fn single_messages_raise_the_prefetch_to_its_slots_in_a_few_steps() {
        let mut credit = Credit::new(85, 16);
        let mut changes = 0;
        for _ in 0..60 {
            changes += usize::from(credit.record(1).is_some());
        }
        assert_eq!(credit.messages(), 85);
        assert!((1..=6).contains(&changes), "{changes} changes");
        // Steady: no more changes.
        assert!((0..100).all(|_| credit.record(1).is_none()));
    }

    #[test]
    fn packs_coming_back_lower_it_again() {
        let mut credit = Credit::new(85, 16);
        for _ in 0..60 {
            credit.record(1);
        }
        for _ in 0..60 {
            credit.record(16);
        }
        // Within twice the full-pack prefetch (22 messages of 16 jobs).
        assert!((22..=44).contains(&credit.messages()), "{credit:?}");
    }

    #[test]
    fn a_steady_mix_settles_without_flapping() {
        let mut credit = Credit::new(128, 16);
        let sizes = [16, 3, 16, 9, 1, 16, 12, 5];
        for &size in sizes.iter().cycle().take(400) {
            credit.record(size);
        }
        let changes = (0..800)
            .filter(|i| credit.record(sizes[i % sizes.len()]).is_some())
            .count();
        assert!(changes <= 2, "{changes} changes in a steady mix");
    }
}
