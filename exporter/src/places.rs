/*!
The exporter's bookkeeping: which connections hold a place, and which answers are held in
memory. One [`Places`] is shared by the accept loop and every connection's task (all on the one
thread; the mutex is never contended, it only makes the table `Send` for tokio).

# Places: a newcomer always gets in

At most [`MAX_CONNECTIONS`] connections are open. A connection that comes when all are taken
is never turned away: another is cut to make room, the oldest that has not yet sent a whole
request (idle, or slow to ask), else the one that has been answered the longest (a client that
does not read). So idle, slow or unread sockets from any local user, however many and however
fast they are renewed, only ever push out each other: an honest request, sent as soon as its
connection is made, is read before the connection is old enough to be cut. (A per-address limit
would not tell local users apart: they are all 127.0.0.1.)

# Answers: shared, and capped

A `/metrics` answer is one immutable buffer, shared by every connection that sends it. A reading
younger than the time it took to make is sent again instead of reading the directories anew, so
however many scrapes come at once, reading takes at most half of the thread, and an answer is
never older than twice one reading (nothing, for a small fleet). The answers that connections
still hold are capped at [`MAX_HELD`] bytes beside the newest: when a new reading would pass
it, the connections still sending the oldest answers are cut. So memory is bounded whatever the
number of clients and however slowly they read: about the newest answer plus [`MAX_HELD`], and
[`MAX_CONNECTIONS`] small buffers.
*/

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio::task::AbortHandle;

/// Connections open at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Bytes of older answers that connections may still hold, beside the newest.
pub const MAX_HELD: usize = 16 << 20;

/// The table of places and answers.
#[derive(Default)]
pub struct Places(Mutex<Table>);

#[derive(Default)]
struct Table {
    /// The next connection's number: numbers grow with the time of accepting.
    next: u64,
    /// Open connections, oldest first.
    open: BTreeMap<u64, Place>,
    /// Answers some connection still holds, and the newest, oldest first.
    answers: VecDeque<Answer>,
    /// The next answer's number.
    made: u64,
}

struct Place {
    /// The whole request head has been read.
    asked: bool,
    /// The answer this connection is sending.
    holds: Option<u64>,
    cut: AbortHandle,
}

struct Answer {
    id: u64,
    body: Bytes,
    /// When the reading ended, and how long it took.
    at: Instant,
    took: Duration,
}

impl Places {
    /// A number for a connection just accepted, before its task exists (the task needs it).
    pub fn number(&self) -> u64 {
        let mut table = self.lock();
        table.next += 1;
        table.next
    }

    /// Connection `id`'s task runs: it holds a place, and if that was one too many, the
    /// connection that can best be spared is cut.
    pub fn admit(&self, id: u64, cut: AbortHandle) {
        let mut table = self.lock();
        table.open.insert(
            id,
            Place {
                asked: false,
                holds: None,
                cut,
            },
        );
        if table.open.len() > MAX_CONNECTIONS {
            let victim = table
                .open
                .iter()
                .find(|(&other, place)| other != id && !place.asked)
                .or_else(|| table.open.iter().find(|(&other, _)| other != id))
                .map(|(&other, _)| other);
            if let Some(victim) = victim {
                table.cut(victim);
            }
        }
    }

    /// Connection `id` has sent a whole request: it is no longer idle.
    pub fn asked(&self, id: u64) {
        if let Some(place) = self.lock().open.get_mut(&id) {
            place.asked = true;
        }
    }

    /// The answer for connection `id`: the newest, if it is younger than its reading took,
    /// else a new one from `read`. Cuts connections holding the oldest answers if more than
    /// [`MAX_HELD`] bytes of them would be held beside it.
    pub fn answer(&self, id: u64, read: impl FnOnce() -> Bytes) -> Bytes {
        self.answer_by(Instant::now, id, read)
    }

    /// [`Places::answer`] by the clock `now`.
    fn answer_by(&self, now: impl Fn() -> Instant, id: u64, read: impl FnOnce() -> Bytes) -> Bytes {
        let reuse = {
            let table = self.lock();
            table
                .answers
                .back()
                .filter(|a| now() - a.at < a.took)
                .map(|a| (a.id, a.body.clone()))
        };
        let (answer, body) = match reuse {
            Some(reused) => reused,
            None => {
                // The lock is not held while reading: nothing else runs meanwhile anyway.
                let started = now();
                let body = read();
                let at = now();
                let mut table = self.lock();
                table.made += 1;
                let answer = table.made;
                table.answers.push_back(Answer {
                    id: answer,
                    body: body.clone(),
                    at,
                    took: at - started,
                });
                table.cap();
                (answer, body)
            }
        };
        if let Some(place) = self.lock().open.get_mut(&id) {
            place.holds = Some(answer);
        }
        body
    }

    /// Connection `id` has ended (or was cut): its place is free.
    pub fn left(&self, id: u64) {
        let mut table = self.lock();
        if table.open.remove(&id).is_some() {
            table.forget();
        }
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> Vec<u64> {
        self.lock().open.keys().copied().collect()
    }

    /// Bytes of answers held now, the newest included.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().answers.iter().map(|a| a.body.len()).sum()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere cannot leave the table half-changed: every change is one call.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Table {
    fn cut(&mut self, id: u64) {
        if let Some(place) = self.open.remove(&id) {
            place.cut.abort();
        }
        self.forget();
    }

    /// Cuts the connections holding the oldest answers until those older than the newest
    /// come to at most [`MAX_HELD`] bytes.
    fn cap(&mut self) {
        self.forget();
        loop {
            let older: usize = self
                .answers
                .iter()
                .rev()
                .skip(1)
                .map(|a| a.body.len())
                .sum();
            if older <= MAX_HELD {
                return;
            }
            let Some(oldest) = self.answers.pop_front() else {
                return;
            };
            let holders: Vec<u64> = self
                .open
                .iter()
                .filter(|(_, place)| place.holds == Some(oldest.id))
                .map(|(&id, _)| id)
                .collect();
            for id in holders {
                if let Some(place) = self.open.remove(&id) {
                    place.cut.abort();
                }
            }
        }
    }

    /// Drops the answers no connection holds, but the newest (which the next scrape may send
    /// again).
    fn forget(&mut self) {
        let newest = self.answers.back().map(|a| a.id);
        let open = &self.open;
        self.answers.retain(|a| {
            Some(a.id) == newest || open.values().any(|place| place.holds == Some(a.id))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that never ends on its own, standing for a connection; whether it was cut.
    struct Conn {
        id: u64,
        task: tokio::task::JoinHandle<()>,
    }

    fn connect(places: &Places) -> Conn {
        let id = places.number();
        let task = tokio::spawn(std::future::pending());
        places.admit(id, task.abort_handle());
        Conn { id, task }
    }

    /// Whether `conn` was cut: a cut task ends, cancelled, once the scheduler has run it
    /// (a few turns of this one-thread runtime); one still running was not.
    async fn was_cut(conn: Conn) -> bool {
        for _ in 0..100 {
            if conn.task.is_finished() {
                return conn.task.await.is_err_and(|e| e.is_cancelled());
            }
            tokio::task::yield_now().await;
        }
        false
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_newcomer_pushes_out_the_oldest_idle_then_the_oldest_answered() {
        let places = Places::default();
        let mut conns: Vec<Conn> = (0..MAX_CONNECTIONS).map(|_| connect(&places)).collect();
        // The first two have asked (one is being answered); the rest are idle.
        places.asked(conns[0].id);
        places.asked(conns[1].id);
        let newcomer = connect(&places);
        let open = places.open();
        assert_eq!(open.len(), MAX_CONNECTIONS);
        assert!(!open.contains(&conns[2].id), "the oldest idle one is cut");
        assert!(open.contains(&conns[0].id) && open.contains(&newcomer.id));
        let third = conns.remove(2);
        assert!(was_cut(third).await);

        // All ask: then the one answered the longest goes, never the newcomer.
        for conn in &conns {
            places.asked(conn.id);
        }
        places.asked(newcomer.id);
        let last = connect(&places);
        let open = places.open();
        assert!(!open.contains(&conns[0].id) && open.contains(&last.id));
        assert!(open.contains(&newcomer.id));
        let first = conns.remove(0);
        assert!(was_cut(first).await);
        assert!(!was_cut(newcomer).await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn answers_are_shared_while_young_and_capped_when_held() {
        let places = Places::default();
        // A clock of our own: each reading takes 100 ms of it.
        let clock = std::cell::Cell::new(Instant::now());
        let now = || clock.get();
        let pass = |ms: u64| clock.set(clock.get() + Duration::from_millis(ms));
        let reads = std::cell::Cell::new(0);
        let read = |len: usize| {
            reads.set(reads.get() + 1);
            pass(100);
            Bytes::from(vec![b'x'; len])
        };
        let half = MAX_HELD / 2 + 1;
        let a = connect(&places);
        let first = places.answer_by(now, a.id, || read(half));
        pass(99);
        let b = connect(&places);
        let again = places.answer_by(now, b.id, || read(1));
        assert_eq!(reads.get(), 1, "a young answer is sent again");
        assert_eq!(first.as_ptr(), again.as_ptr(), "shared, not copied");

        // Once it is as old as its reading took, a new one is read; the old one is still
        // held by a and b, and within the cap.
        pass(1);
        let c = connect(&places);
        places.answer_by(now, c.id, || read(half));
        assert_eq!(reads.get(), 2);
        assert_eq!(places.open().len(), 3);
        // A third: the two older ones would pass the cap, so the holders of the oldest go.
        pass(100);
        let d = connect(&places);
        places.answer_by(now, d.id, || read(10));
        assert_eq!(places.open(), [c.id, d.id]);
        assert!(was_cut(a).await && was_cut(b).await);
        assert_eq!(places.held(), half + 10);

        // An answer nobody holds any more is let go, but the newest.
        places.left(c.id);
        assert_eq!(places.held(), 10);
        places.left(d.id);
        assert_eq!(places.held(), 10);
    }
}
