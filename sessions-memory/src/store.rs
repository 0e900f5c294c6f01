//! The store behind [`InMemoryBackend`](crate::InMemoryBackend): the records, their expiry
//! and their eviction when the store is full (sessions whose client never came back go
//! first), and the index of sessions by user.

use super::Inner;
use sessionkit_core::{Error, SessionData};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

/// Keys are ids this store minted itself (random, 192 bits), and client-chosen values are only
/// ever looked up, never inserted, so no client can steer keys into collisions: a fast keyed
/// hasher is safe here, and far cheaper than SipHash on every request.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// A queue entry: a record's id and the creation number it had when queued. An entry whose
/// record is gone, or was created anew under the same id, is stale and skipped.
pub(crate) type Entry = (Arc<str>, u64);

/// How many queue entries each create examines for expired records, beside any eviction:
/// expiry without a scan of the whole store, every record visited about every `len / 2`
/// creates.
pub(crate) const UPKEEP_STEPS: usize = 2;

#[derive(Default)]
pub(crate) struct Store {
    pub(crate) records: HashMap<Arc<str>, Record, Hasher>,
    /// Records never written since their creation (their client has not come back), oldest
    /// first: evicted first when the store is full.
    pub(crate) fresh: VecDeque<Entry>,
    /// Records written again since their creation, taken in turn by the upkeep: evicted only
    /// when no fresh record is left.
    pub(crate) returned: VecDeque<Entry>,
    /// Where the expiry upkeep looks next in `fresh` (it visits every entry in turn without
    /// reordering the queue, so one long-lived record cannot hide expired ones behind it).
    pub(crate) fresh_cursor: usize,
    /// The next creation number.
    pub(crate) next_born: u64,
    /// The next write's sequence number (every write, creation included).
    pub(crate) next_seq: u64,
    /// The ids of the records bound to each user, kept exact under the store's lock: every
    /// create, update and removal of a bound record updates it.
    pub(crate) users: Users,
    /// The markers of sessions that ended or moved moments ago, with when each one goes.
    pub(crate) ended: HashMap<Arc<str>, SystemTime, Hasher>,
    /// The same markers, oldest first: each new marker drops those that went by.
    pub(crate) ended_order: VecDeque<(Arc<str>, SystemTime)>,
    /// Session locks (locked routes): each session's holder's token and the end of its
    /// lease. An entry leaves when its holder gives it back or another request takes it
    /// after the lease; one whose holder never came back stays until then (a few dozen
    /// bytes).
    pub(crate) locks: HashMap<Arc<str>, (String, Option<SystemTime>), Hasher>,
}

/// Each user's session ids.
pub(crate) type Users = HashMap<Arc<str>, HashSet<Arc<str>, Hasher>, Hasher>;

/// Add `id` to the index of the user `data` is bound to, if any.
pub(crate) fn index(users: &mut Users, id: &Arc<str>, data: &SessionData) {
    if let Some(user) = data.user() {
        match users.get_mut(user) {
            Some(ids) => {
                ids.insert(Arc::clone(id));
            }
            None => index_as(users, Arc::from(user), id),
        }
    }
}

/// Add `id` to `user`'s index.
pub(crate) fn index_as(users: &mut Users, user: Arc<str>, id: &Arc<str>) {
    users.entry(user).or_default().insert(Arc::clone(id));
}

/// Take `id` out of the index of the user `data` is bound to, if any.
pub(crate) fn unindex(users: &mut Users, id: &str, data: &SessionData) {
    if let Some(user) = data.user() {
        if let Some(ids) = users.get_mut(user) {
            ids.remove(id);
            if ids.is_empty() {
                users.remove(user);
            }
        }
    }
}

pub(crate) struct Record {
    pub(crate) data: SessionData,
    pub(crate) expires: Option<SystemTime>,
    /// The write's sequence number: the read's revision, so a save knows whether the record
    /// changed since.
    pub(crate) seq: u64,
    /// The creation number, matched against queue entries.
    pub(crate) born: u64,
    /// The record's id, shared with its queue entries.
    pub(crate) key: Arc<str>,
    /// Whether the record was written since its creation (it is in `returned`).
    pub(crate) returned: bool,
}

impl Record {
    pub(crate) fn live(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

impl Store {
    /// Leave a marker where the session `id` ended, for
    /// [`ENDED_GRACE`](sessionkit_core::ENDED_GRACE); markers past theirs go on the way.
    pub(crate) fn mark_ended(&mut self, id: &str, now: SystemTime) {
        while let Some((old, until)) = self.ended_order.front() {
            if *until > now {
                break;
            }
            if self.ended.get(old) == Some(until) {
                self.ended.remove(old);
            }
            self.ended_order.pop_front();
        }
        let until = now + sessionkit_core::ENDED_GRACE;
        let id: Arc<str> = Arc::from(id);
        self.ended.insert(Arc::clone(&id), until);
        self.ended_order.push_back((id, until));
    }

    /// Whether `token` holds the lock of `id` with a lease that has not run out.
    pub(crate) fn lock_held_by(&self, id: &str, token: &str, now: SystemTime) -> bool {
        self.locks
            .get(id)
            .is_some_and(|(holder, ends)| holder == token && ends.is_none_or(|ends| ends > now))
    }

    /// Whether `id` holds the marker of a session that ended moments ago.
    pub(crate) fn ended_recently(&self, id: &str, now: SystemTime) -> bool {
        self.ended.get(id).is_some_and(|until| *until > now)
    }

    /// The ids in `user`'s entry of the index.
    pub(crate) fn ids_of(&self, user: &str) -> Vec<Arc<str>> {
        self.users
            .get(user)
            .map_or_else(Vec::new, |ids| ids.iter().cloned().collect())
    }

    /// Remove the record `id`, and its entry in the user index.
    pub(crate) fn drop_record(&mut self, id: &str) -> Option<Record> {
        let record = self.records.remove(id)?;
        unindex(&mut self.users, id, &record.data);
        Some(record)
    }

    pub(crate) fn sweep(&mut self, now: SystemTime) -> usize {
        let before = self.records.len();
        let Store { records, users, .. } = self;
        records.retain(|id, record| {
            let live = record.live(now);
            if !live {
                unindex(users, id, &record.data);
            }
            live
        });
        self.compact();
        before - self.records.len()
    }

    /// Drop stale entries when they outnumber the records: amortised O(1) per create.
    pub(crate) fn compact(&mut self) {
        if self.fresh.len() + self.returned.len() <= 2 * self.records.len() + 1024 {
            return;
        }
        let records = &self.records;
        let keep = |(id, born): &Entry, returned: bool| {
            records
                .get(id)
                .is_some_and(|r| r.born == *born && r.returned == returned)
        };
        self.fresh.retain(|entry| keep(entry, false));
        self.returned.retain(|entry| keep(entry, true));
        self.fresh_cursor = 0;
    }

    /// Put a new record under `id`. A record of a session that was saved before (a new id
    /// for it: its last access is past its creation) counts as come back.
    pub(crate) fn create(&mut self, id: Arc<str>, data: SessionData, expires: Option<SystemTime>) {
        let (born, seq) = (self.next_born, self.next_seq);
        self.next_born += 1;
        self.next_seq += 1;
        let returned = data.last_access_unix() > data.created_unix();
        let queue = if returned {
            &mut self.returned
        } else {
            &mut self.fresh
        };
        queue.push_back((Arc::clone(&id), born));
        let user: Option<Arc<str>> = data.user().map(Arc::from);
        let replaced = self.records.insert(
            Arc::clone(&id),
            Record {
                data,
                expires,
                seq,
                born,
                key: Arc::clone(&id),
                returned,
            },
        );
        // An expired record under the same id was replaced: its binding goes with it.
        if let Some(old) = replaced {
            unindex(&mut self.users, &id, &old.data);
        }
        if let Some(user) = user {
            index_as(&mut self.users, user, &id);
        }
    }

    /// Replace the live record `id` with what `f` makes of it and its write's sequence number
    /// (`None`: remove it); [`Error::SessionGone`] when there is no live record, which is
    /// then not brought back. A record written again has come back: it moves to `returned`.
    pub(crate) fn update(
        &mut self,
        id: &str,
        now: SystemTime,
        expires: Option<SystemTime>,
        f: impl FnOnce(&SessionData, u64) -> Option<SessionData>,
    ) -> Result<Option<SessionData>, Error> {
        let seq = self.next_seq;
        let Some(record) = self.records.get_mut(id) else {
            return Err(Error::SessionGone);
        };
        if !record.live(now) {
            return Err(Error::SessionGone);
        }
        let Some(data) = f(&record.data, record.seq) else {
            self.drop_record(id);
            return Ok(None);
        };
        if record.data.user() != data.user() {
            unindex(&mut self.users, id, &record.data);
            index(&mut self.users, &record.key, &data);
        }
        record.data = data.clone();
        record.expires = expires;
        record.seq = seq;
        if !record.returned {
            record.returned = true;
            self.returned
                .push_back((Arc::clone(&record.key), record.born));
        }
        self.next_seq += 1;
        Ok(Some(data))
    }

    /// Upkeep in `fresh`: drop the front entry when stale (its record gone, or come back and
    /// queued in `returned`), and purge the record of the entry under the cursor when it
    /// expired (its entry is dropped when it reaches the front). Live entries stay in place,
    /// so `fresh` keeps its oldest-first order for eviction.
    pub(crate) fn step_fresh(&mut self, now: SystemTime) {
        while let Some((id, born)) = self.fresh.front() {
            let stale = self
                .records
                .get(id)
                .is_none_or(|r| r.born != *born || r.returned);
            if !stale {
                break;
            }
            self.fresh.pop_front();
            self.fresh_cursor = self.fresh_cursor.saturating_sub(1);
        }
        if self.fresh_cursor >= self.fresh.len() {
            self.fresh_cursor = 0;
        }
        let Some((id, born)) = self.fresh.get(self.fresh_cursor) else {
            return;
        };
        let expired = self
            .records
            .get(id)
            .is_some_and(|r| r.born == *born && !r.returned && !r.live(now));
        if expired {
            let id = Arc::clone(id);
            self.drop_record(&id);
        }
        self.fresh_cursor += 1;
    }

    /// Upkeep at the front of `returned`: drop the entry when stale, purge its record when
    /// expired, else move it to the back, so every returned record is looked at in turn
    /// (their deadlines move with each write, so no order here follows them).
    pub(crate) fn step_returned(&mut self, now: SystemTime) {
        let Some(entry) = self.returned.pop_front() else {
            return;
        };
        if let Some(record) = self.records.get(&entry.0) {
            if record.born == entry.1 {
                if record.live(now) {
                    self.returned.push_back(entry);
                } else {
                    self.drop_record(&entry.0);
                }
            }
        }
    }

    /// Remove one record to make room: the oldest in `queue` that is still queued there.
    pub(crate) fn evict_from(&mut self, returned: bool) -> bool {
        loop {
            let queue = if returned {
                &mut self.returned
            } else {
                &mut self.fresh
            };
            let Some(entry) = queue.pop_front() else {
                return false;
            };
            if self
                .records
                .get(&entry.0)
                .is_some_and(|r| r.born == entry.1 && r.returned == returned)
            {
                self.drop_record(&entry.0);
                return true;
            }
        }
    }

    /// Upkeep before a create: a few entries checked for expiry, and room made when the
    /// store is full. Bounded work per create (stale entries popped here were each pushed
    /// once), never a scan of the store.
    pub(crate) fn make_room(&mut self, inner: &Inner, now: SystemTime) {
        for _ in 0..UPKEEP_STEPS {
            self.step_fresh(now);
            self.step_returned(now);
        }
        if let Some(max) = inner.max_sessions {
            while self.records.len() >= max {
                if !self.evict_from(false) && !self.evict_from(true) {
                    break;
                }
            }
        }
        self.compact();
    }
}
