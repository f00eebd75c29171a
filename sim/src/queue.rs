//! The event queue: a timing wheel of 1 ms slots over a binary heap for the far future.
//!
//! A run of 100,000 nodes keeps millions of events pending (RPC deadlines, cluster checks,
//! messages in flight). A binary heap pays `log n` cache-missing compares on every push and
//! pop; the wheel pays one `Vec::push` per event and sorts only the events of the slot being
//! run. Order is exactly (time, sequence): events of one slot go through a small heap, and
//! the sequence number breaks ties, so runs replay bit for bit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Virtual time in microseconds since the start of a run.
pub type Micros = u64;

#[derive(Debug)]
struct Entry<T> {
    at: Micros,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Width of one wheel slot.
const SLOT_US: Micros = 1_000;
/// Slots in the wheel: events up to about 65 s ahead go straight into a slot.
const SLOTS: u64 = 1 << 16;

/// A priority queue of `T` by virtual time, FIFO among equal times.
#[derive(Debug)]
pub struct EventQueue<T> {
    /// Ring of slots; slot `s` (absolute) lives at `s % SLOTS`.
    wheel: Vec<Vec<Entry<T>>>,
    /// Events in the wheel (not counting `current`).
    in_wheel: usize,
    /// Absolute number of the slot being run.
    cursor: u64,
    /// The events of the cursor's slot, in order.
    current: BinaryHeap<Reverse<Entry<T>>>,
    /// Events beyond the wheel's horizon.
    far: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
    /// Time of the last event popped; nothing is ever scheduled before it.
    now: Micros,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> EventQueue<T> {
    /// An empty queue at time 0.
    pub fn new() -> Self {
        EventQueue {
            wheel: (0..SLOTS).map(|_| Vec::new()).collect(),
            in_wheel: 0,
            cursor: 0,
            current: BinaryHeap::new(),
            far: BinaryHeap::new(),
            seq: 0,
            now: 0,
        }
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.in_wheel + self.current.len() + self.far.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Schedules `item` at `at` (an instant in the past is taken as now).
    pub fn push(&mut self, at: Micros, item: T) {
        self.seq += 1;
        self.insert(at, self.seq, item);
    }

    /// Puts back an event popped with [`pop_entry`](Self::pop_entry), with the sequence
    /// number it had: among events of its time it keeps its place (a parallel window hands
    /// back what it did not run, see [`rewind`](Self::rewind)).
    pub fn push_again(&mut self, at: Micros, seq: u64, item: T) {
        self.insert(at, seq, item);
    }

    /// Time of the last event popped (or of the last rewind): nothing is scheduled before it.
    pub fn now(&self) -> Micros {
        self.now
    }

    fn insert(&mut self, at: Micros, seq: u64, item: T) {
        let at = at.max(self.now);
        let entry = Entry { at, seq, item };
        let slot = at / SLOT_US;
        if slot <= self.cursor {
            self.current.push(Reverse(entry));
        } else if slot < self.cursor + SLOTS {
            self.wheel[(slot % SLOTS) as usize].push(entry);
            self.in_wheel += 1;
        } else {
            self.far.push(Reverse(entry));
        }
    }

    /// The earliest event, if any.
    pub fn pop(&mut self) -> Option<(Micros, T)> {
        self.pop_entry().map(|(at, _, item)| (at, item))
    }

    /// The earliest event with its sequence number, if any.
    pub fn pop_entry(&mut self) -> Option<(Micros, u64, T)> {
        if !self.fill_current() {
            return None;
        }
        let Reverse(e) = self.current.pop()?;
        self.now = e.at;
        Some((e.at, e.seq, e.item))
    }

    /// The time of the earliest event, without removing it.
    pub fn peek_time(&mut self) -> Option<Micros> {
        self.peek().map(|(at, _)| at)
    }

    /// The earliest event, without removing it.
    pub fn peek(&mut self) -> Option<(Micros, &T)> {
        if !self.fill_current() {
            return None;
        }
        self.current.peek().map(|Reverse(e)| (e.at, &e.item))
    }

    /// Lets events be scheduled again from `to` on, though later ones were popped: a
    /// parallel window pops its whole span, then hands back what it did not run. Such
    /// events land in the heap of the slot being run, which is ordered, so they come out
    /// before everything later, in (time, sequence) order as always.
    pub fn rewind(&mut self, to: Micros) {
        self.now = self.now.min(to);
    }

    /// Advances the cursor until the current slot has events; false if none are left.
    fn fill_current(&mut self) -> bool {
        while self.current.is_empty() {
            if self.in_wheel == 0 {
                // Jump over empty time straight to the far future.
                let Some(Reverse(next)) = self.far.peek() else {
                    return false;
                };
                self.cursor = next.at / SLOT_US;
            } else {
                self.cursor += 1;
            }
            self.pull_far();
            // Taken, not drained: a drained slot would keep the room of the most events it
            // ever held until the end of the run, and every slot has its busy moment (the
            // joins of 100,000 nodes fill each 1 ms slot with thousands).
            let slot = std::mem::take(&mut self.wheel[(self.cursor % SLOTS) as usize]);
            if !slot.is_empty() {
                self.in_wheel -= slot.len();
                self.current.extend(slot.into_iter().map(Reverse));
            }
        }
        true
    }

    /// Moves far events that now fall within the wheel's horizon into their slots.
    fn pull_far(&mut self) {
        while let Some(Reverse(next)) = self.far.peek() {
            let slot = next.at / SLOT_US;
            if slot >= self.cursor + SLOTS {
                break;
            }
            let Some(Reverse(e)) = self.far.pop() else {
                break;
            };
            if slot <= self.cursor {
                self.current.push(Reverse(e));
            } else {
                self.wheel[(slot % SLOTS) as usize].push(e);
                self.in_wheel += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_slot_gives_its_room_back_once_run() {
        let mut q = EventQueue::new();
        for i in 0..10_000u64 {
            q.push(5 * SLOT_US + i % SLOT_US, i);
        }
        q.push(9 * SLOT_US, 0);
        assert_eq!(q.pop().map(|(at, _)| at), Some(5 * SLOT_US));
        let holding = |q: &EventQueue<u64>| q.wheel.iter().filter(|s| s.capacity() > 0).count();
        assert_eq!(
            holding(&q),
            1,
            "only the slot of the event at 9 ms holds room"
        );
        let mut popped = 1;
        while q.pop().is_some() {
            popped += 1;
        }
        assert_eq!(popped, 10_001);
        assert_eq!(holding(&q), 0);
    }

    #[test]
    fn pops_in_time_then_insertion_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut q = EventQueue::new();
        let mut reference = Vec::new();
        for i in 0..20_000u64 {
            // Near and far events, with many ties.
            let at = match i % 3 {
                0 => rng.random_range(0..5_000),
                1 => rng.random_range(0..200_000_000),
                _ => 1_000 * rng.random_range(0..50),
            };
            q.push(at, i);
            reference.push((at, i));
        }
        reference.sort();
        let mut popped = Vec::new();
        while let Some(e) = q.pop() {
            popped.push(e);
        }
        assert_eq!(popped, reference);
        assert!(q.is_empty());
    }

    #[test]
    fn events_pushed_while_running_keep_order() {
        let mut q = EventQueue::new();
        q.push(10_000, "a");
        q.push(500_000_000, "far");
        assert_eq!(q.pop(), Some((10_000, "a")));
        // Scheduled "in the past": runs now, after nothing earlier.
        q.push(5, "late");
        q.push(10_000, "same time");
        q.push(10_500, "soon");
        assert_eq!(q.pop(), Some((10_000, "late")));
        assert_eq!(q.pop(), Some((10_000, "same time")));
        assert_eq!(q.peek_time(), Some(10_500));
        assert_eq!(q.pop(), Some((10_500, "soon")));
        assert_eq!(q.pop(), Some((500_000_000, "far")));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn events_handed_back_after_a_window_come_out_in_order() {
        let mut q = EventQueue::new();
        for (at, name) in [(1_000, "a"), (1_200, "b"), (3_500, "c"), (9_000, "d")] {
            q.push(at, name);
        }
        // A window pops everything before 4 ms, then hands back two events it did not run.
        assert_eq!(q.pop(), Some((1_000, "a")));
        assert_eq!(q.pop(), Some((1_200, "b")));
        assert_eq!(q.pop(), Some((3_500, "c")));
        assert_eq!(q.peek().map(|(at, n)| (at, *n)), Some((9_000, "d")));
        // Pushed before the rewind, it would be taken as "now" (3.5 ms): too late.
        q.rewind(1_000);
        assert_eq!(q.now(), 1_000);
        q.push(3_500, "c again");
        q.push(1_200, "b again");
        q.push(1_200, "b, then this");
        assert_eq!(q.pop(), Some((1_200, "b again")));
        assert_eq!(q.pop(), Some((1_200, "b, then this")));
        assert_eq!(q.pop(), Some((3_500, "c again")));
        assert_eq!(q.pop(), Some((9_000, "d")));
        assert!(q.is_empty());
    }

    #[test]
    fn an_event_put_back_keeps_its_place_among_events_of_its_time() {
        let mut q = EventQueue::new();
        q.push(2_000, "first");
        q.push(2_000, "second");
        q.push(2_000, "third");
        let (at, seq, item) = q.pop_entry().expect("an event");
        assert_eq!((at, item), (2_000, "first"));
        assert_eq!(q.pop(), Some((2_000, "second")));
        q.rewind(2_000);
        q.push_again(at, seq, item);
        q.push(2_000, "fourth");
        assert_eq!(q.pop(), Some((2_000, "first")));
        assert_eq!(q.pop(), Some((2_000, "third")));
        assert_eq!(q.pop(), Some((2_000, "fourth")));
    }
}
