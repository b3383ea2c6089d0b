//! Online accounting over a rolling window: per-bucket online seconds, advanced by the
//! device controller each time it observes a device. Pure; times are Unix seconds.

pub use crate::api::device::OnlineWindow;

/// Buckets in the window.
pub const BUCKETS: usize = 24;
/// Seconds per bucket: the window is 24 hours.
pub const BUCKET_SECONDS: i64 = 3600;

/// Online accounting on the window the Device status carries.
pub trait Accounting {
    /// A window starting at `now`.
    fn start(now: i64) -> Self;
    /// Accounts `[accounted_until, now)` as online or offline.
    fn advance(&mut self, now: i64, online: bool);
    /// Online share of the window (or of the time since joining, if shorter), per mille.
    fn ratio_permille(&self) -> u32;
}

impl Accounting for OnlineWindow {
    fn start(now: i64) -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            accounted_until: now,
            since: now,
        }
    }

    /// Accounts `[accounted_until, now)` as online or offline. Time going backwards is
    /// ignored, so a skewed clock never rewrites history.
    fn advance(&mut self, now: i64, online: bool) {
        if self.buckets.len() != BUCKETS {
            self.buckets = vec![0; BUCKETS];
        }
        let mut t = self.accounted_until;
        if now <= t {
            return;
        }
        // Only the last window matters; skip whole windows of elapsed time.
        let window = BUCKET_SECONDS * BUCKETS as i64;
        if now - t > window {
            self.buckets.iter_mut().for_each(|b| *b = 0);
            t = now - window;
        }
        while t < now {
            let hour = t.div_euclid(BUCKET_SECONDS);
            let end = ((hour + 1) * BUCKET_SECONDS).min(now);
            let idx = hour.rem_euclid(BUCKETS as i64) as usize;
            // Entering an hour at its start means the bucket still holds the hour a
            // day earlier; a mid-hour start continues the current hour's record.
            if t == hour * BUCKET_SECONDS {
                self.buckets[idx] = 0;
            }
            if online {
                self.buckets[idx] = self.buckets[idx].saturating_add((end - t) as u32);
            }
            t = end;
        }
        // Standing exactly on an hour boundary has entered that hour with nothing yet.
        if now.rem_euclid(BUCKET_SECONDS) == 0 {
            self.buckets[now.div_euclid(BUCKET_SECONDS).rem_euclid(BUCKETS as i64) as usize] = 0;
        }
        self.accounted_until = now;
    }

    /// Online share of the window (or of the time since joining, if shorter), per mille.
    fn ratio_permille(&self) -> u32 {
        // The buckets cover the current partial hour and the 23 hours before it.
        let now = self.accounted_until;
        let first_hour = now.div_euclid(BUCKET_SECONDS) - (BUCKETS as i64 - 1);
        let covered = now - first_hour * BUCKET_SECONDS;
        let observed = (now - self.since).clamp(0, covered);
        if observed == 0 {
            return 0;
        }
        let online: i64 = self.buckets.iter().map(|&b| i64::from(b)).sum();
        ((online.min(observed) * 1000) / observed) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = BUCKET_SECONDS;

    #[test]
    fn always_online_is_a_full_ratio() {
        let mut w = OnlineWindow::start(10 * H);
        w.advance(13 * H + 120, true);
        assert_eq!(w.ratio_permille(), 1000);
        w.advance(90 * H + 77, true);
        assert_eq!(w.ratio_permille(), 1000);
    }

    #[test]
    fn half_online_is_half() {
        let mut w = OnlineWindow::start(0);
        w.advance(2 * H, true);
        w.advance(4 * H, false);
        assert_eq!(w.ratio_permille(), 500);
    }

    #[test]
    fn old_online_time_leaves_the_window() {
        let mut w = OnlineWindow::start(0);
        w.advance(24 * H, true);
        w.advance(36 * H, false);
        // The window now covers hours 13..36: 11 of those 23 hours were online.
        assert_eq!(w.ratio_permille(), 11 * 1000 / 23);
        w.advance(100 * H, false);
        assert_eq!(w.ratio_permille(), 0);
    }

    #[test]
    fn many_small_steps_equal_one_big_step() {
        let mut a = OnlineWindow::start(1000);
        let mut b = a.clone();
        for t in (1000..1000 + 30 * H).step_by(97) {
            a.advance(t, true);
        }
        a.advance(1000 + 30 * H, true);
        b.advance(1000 + 30 * H, true);
        assert_eq!(a.ratio_permille(), b.ratio_permille());
        assert_eq!(a.buckets, b.buckets);
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let mut w = OnlineWindow::start(5 * H);
        w.advance(6 * H, true);
        let before = w.clone();
        w.advance(4 * H, false);
        assert_eq!(w, before);
    }
}
