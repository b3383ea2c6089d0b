//! Coalescing a stream of change signals into ticks at most one `gap` apart, without
//! losing any: a change that arrives too soon after a tick is not dropped but answered
//! by one tick when the gap is over, together with every change that arrived meanwhile.
//! The task controller re-examines every task on a tick, so ticks must be rare, yet a
//! lost one would leave a vanished device's work unnoticed until the next resync.

use futures::{FutureExt, Stream, StreamExt};
use std::time::Duration;
use tokio::time::Instant;

/// Ticks for the changes of `changes`: immediately after a quiet `gap`, otherwise when
/// `gap` has passed since the last tick. Ends when `changes` ends.
pub fn coalesce<S>(changes: S, gap: Duration) -> impl Stream<Item = ()> + Send
where
    S: Stream<Item = ()> + Send + 'static,
{
    futures::stream::unfold(
        (changes.boxed(), None::<Instant>),
        move |(mut changes, last)| async move {
            changes.next().await?;
            if let Some(last) = last {
                tokio::time::sleep_until(last + gap).await;
            }
            // Whatever arrived while waiting is answered by this tick.
            while let Some(Some(())) = changes.next().now_or_never() {}
            Some(((), (changes, Some(Instant::now()))))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;

    /// When ticks arrive (milliseconds after the start) for changes sent at `offsets`.
    async fn ticks_for(offsets: &[u64], gap: u64) -> Vec<u64> {
        let start = Instant::now();
        let (tx, rx) = mpsc::unbounded();
        let offsets = offsets.to_vec();
        tokio::spawn(async move {
            for at in offsets {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                tx.unbounded_send(()).unwrap();
            }
        });
        coalesce(rx, Duration::from_millis(gap))
            .map(|()| (Instant::now() - start).as_millis() as u64)
            .collect()
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_change_ticks_at_once() {
        assert_eq!(ticks_for(&[0], 2000).await, [0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_inside_the_gap_is_answered_when_the_gap_ends_not_dropped() {
        assert_eq!(ticks_for(&[0, 500], 2000).await, [0, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_inside_the_gap_becomes_one_tick() {
        assert_eq!(ticks_for(&[0, 100, 200, 300, 1900], 2000).await, [0, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_after_a_quiet_gap_tick_at_once() {
        assert_eq!(ticks_for(&[0, 2500, 9000], 2000).await, [0, 2500, 9000]);
    }
}
