//! A bounded least-recently-used cache of jobs by id. It never grows past its capacity.

use super::job::Job;
use std::collections::{BTreeMap, HashMap};

/// LRU cache of jobs.
#[derive(Debug)]
pub struct Cache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (Job, u64)>,
    order: BTreeMap<u64, String>,
}

impl Cache {
    /// A cache holding at most `capacity` jobs (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Number of cached jobs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The job, marked as recently used.
    pub fn get(&mut self, id: &str) -> Option<Job> {
        self.tick += 1;
        let tick = self.tick;
        let (job, t) = self.entries.get_mut(id)?;
        self.order.remove(t);
        *t = tick;
        self.order.insert(tick, id.to_string());
        Some(job.clone())
    }

    /// Inserts or replaces a job, evicting the least recently used beyond capacity.
    pub fn put(&mut self, job: Job) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, old)) = self.entries.remove(&job.id) {
            self.order.remove(&old);
        }
        self.order.insert(tick, job.id.clone());
        self.entries.insert(job.id.clone(), (job, tick));
        while self.entries.len() > self.capacity {
            match self.order.pop_first() {
                Some((_, id)) => {
                    self.entries.remove(&id);
                }
                None => break,
            }
        }
    }

    /// Drops a job.
    pub fn remove(&mut self, id: &str) {
        if let Some((_, t)) = self.entries.remove(id) {
            self.order.remove(&t);
        }
    }
}
