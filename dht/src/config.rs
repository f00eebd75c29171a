//! Every tunable of the DHT, with Coral's defaults.

use std::time::Duration;

/// Parameters of one DHT node. `Config::default()` gives Coral's published values
/// (NSDI 2004, section 4) where the paper gives one, and conservative limits elsewhere.
///
/// All nodes of one network should share the level thresholds and `k`; the rest may differ.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Bucket size and the number of closest nodes a lookup converges on (Kademlia's `k`).
    pub k: usize,
    /// Requests a lookup keeps in flight at once (Kademlia's `alpha`).
    pub alpha: usize,
    /// Probes a put's forward phase keeps in flight. Coral walks "successively closer" one
    /// node at a time: every extra probe in flight lands on the crowded nodes near a hot key,
    /// and a put is not waited for, so it trades no latency anyone sees.
    pub put_alpha: usize,
    /// Cluster RTT thresholds for levels 1, 2, ... (level 0 is global and has none). Coral
    /// uses 60 ms and 20 ms, giving three levels. Must be decreasing.
    pub level_rtt_thresholds: Vec<Duration>,
    /// A node joins (or stays in) a cluster only if its minimum RTT to at least this fraction
    /// of the cluster members it has sampled is under the level's threshold (Coral: 80 %).
    pub cluster_membership_fraction: f64,
    /// A cluster counts as "larger" only if its size estimate exceeds ours by this factor, so
    /// noisy estimates do not make nodes flap between two clusters of similar size. Sizes are
    /// estimated from the density of IDs in a routing table and are easily off by half: in
    /// a simulated flash crowd of 10,000 nodes, 0.5 made 5 % fewer moves than 0.25 and left
    /// fewer clusters (54 and 176 at levels 1 and 2, not 59 and 192) with faster lookups.
    pub cluster_size_hysteresis: f64,
    /// Clusters whose ages differ by less than this are equally old; the lower ID then wins
    /// the tie, so two young clusters of one size still merge.
    pub cluster_age_tie: Duration,
    /// How often a node re-evaluates its cluster at every level (and pings a few peers heard
    /// from least recently). After a check that changes nothing the interval doubles, up to
    /// `cluster_check_max_interval`; a move brings it back to this.
    pub cluster_check_interval: Duration,
    /// The longest interval between cluster checks of a settled node.
    pub cluster_check_max_interval: Duration,
    /// After a move at a level, the node does not move to another cluster it merely prefers
    /// (a larger one) at that level for this long; a cluster that is no longer near is still
    /// left at once, and a node alone in its cluster is never held. Each further move within
    /// `cluster_move_hold_max` of the last doubles the hold, up to that maximum; a node that
    /// stayed put that long starts again here.
    pub cluster_move_hold: Duration,
    /// The longest hold after a move (see `cluster_move_hold`).
    pub cluster_move_hold_max: Duration,
    /// How often a node announces itself under its locality keys (`Node::set_locality`),
    /// and looks them up while it is alone in a cluster at some level. The announcement
    /// lives twice this long, so one lost renewal does not hide the node. 30 minutes: a node
    /// needs its neighbours once, at start, and every announcement is a put at level 0; in
    /// a simulated flash crowd 10 minutes gave the same clusters for 2 % more messages.
    pub locality_interval: Duration,
    /// Peers whose RTT and cluster descriptors are remembered for cluster decisions.
    pub peer_info_capacity: usize,
    /// Forget a peer's RTT and descriptors when nothing was heard from it for this long.
    pub peer_info_ttl: Duration,
    /// Coral's sloppy storage (true), or classic Kademlia (false): a put stores at the `k`
    /// closest nodes, which always accept, and nothing is ever "full" or "loaded". The
    /// classic mode is the `flat` baseline of reef-sim.
    pub sloppy: bool,
    /// Values per key at which a node can become "full" (Coral's `l`); in classic mode, the
    /// values kept per key (the soonest to expire makes room).
    pub values_per_key: usize,
    /// Requests for a key per `loaded_window` above which a node is "loaded" (Coral's `beta`).
    pub loaded_threshold: u32,
    /// The window over which requests for a key are counted (Coral: one minute).
    pub loaded_window: Duration,
    /// Shortest TTL accepted for a stored value; shorter requests are raised to it.
    pub min_ttl: Duration,
    /// Longest TTL accepted for a stored value; longer requests are cut to it.
    pub max_ttl: Duration,
    /// Keys a node stores at most (per level); the key whose values expire first is dropped
    /// to make room, so a flood of puts cannot exhaust memory.
    pub max_keys: usize,
    /// Values returned in one response at most.
    pub max_values_per_response: usize,
    /// Time a peer has to answer one request before it is retried or given up on.
    pub rpc_timeout: Duration,
    /// Retries of a request after its first timeout before the peer counts as failed.
    pub rpc_retries: u32,
    /// Upper bound on the time a whole get, put or lookup may take.
    pub query_timeout: Duration,
    /// A bucket none of whose entries was heard from for this long is refreshed by a lookup
    /// of a random ID in its range, checked this often (Kademlia's hourly refresh; shorter
    /// because clusters change). Traffic keeps the buckets of a busy node fresh.
    pub bucket_refresh_interval: Duration,
    /// A newcomer to a full bucket makes the node ping the bucket's least-recently-seen entry
    /// only if that entry has been silent this long; one heard from lately is alive. 15
    /// minutes, as BitTorrent's DHT (BEP 5) keeps a node "good": with one minute, busy nodes
    /// kept re-pinging every full bucket, and those pings were over a quarter of all DHT
    /// messages in a simulated flash crowd. A dead entry is still dropped as soon as a
    /// request to it fails.
    pub liveness_check_after: Duration,
    /// Candidates kept per bucket for when an entry fails (Kademlia's replacement cache).
    pub replacement_cache_size: usize,
    /// Largest encoded message accepted or produced, in bytes.
    pub max_message_size: usize,
    /// Seed of the node's only random number generator. Same seed and same inputs give the
    /// same outputs.
    pub rng_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            k: 20,
            alpha: 3,
            put_alpha: 1,
            level_rtt_thresholds: vec![Duration::from_millis(60), Duration::from_millis(20)],
            cluster_membership_fraction: 0.8,
            cluster_size_hysteresis: 0.5,
            cluster_age_tie: Duration::from_secs(5),
            cluster_check_interval: Duration::from_secs(10),
            cluster_check_max_interval: Duration::from_secs(40),
            cluster_move_hold: Duration::from_secs(30),
            cluster_move_hold_max: Duration::from_secs(10 * 60),
            locality_interval: Duration::from_secs(30 * 60),
            peer_info_capacity: 512,
            peer_info_ttl: Duration::from_secs(30 * 60),
            sloppy: true,
            values_per_key: 4,
            loaded_threshold: 12,
            loaded_window: Duration::from_secs(60),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(24 * 3600),
            max_keys: 100_000,
            max_values_per_response: 16,
            rpc_timeout: Duration::from_secs(1),
            rpc_retries: 2,
            query_timeout: Duration::from_secs(10),
            bucket_refresh_interval: Duration::from_secs(10 * 60),
            liveness_check_after: Duration::from_secs(15 * 60),
            replacement_cache_size: 8,
            max_message_size: 64 * 1024,
            rng_seed: 0,
        }
    }
}

impl Config {
    /// Number of levels, including the global level 0.
    pub fn levels(&self) -> usize {
        self.level_rtt_thresholds.len() + 1
    }

    /// The RTT threshold of a level; `None` for level 0.
    pub fn threshold(&self, level: usize) -> Option<Duration> {
        level
            .checked_sub(1)
            .and_then(|i| self.level_rtt_thresholds.get(i).copied())
    }

    /// Checks the parameters that would make the node misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &'static str| Err(ConfigError(what));
        if self.k == 0 {
            return bad("k must be at least 1");
        }
        if self.alpha == 0 || self.put_alpha == 0 {
            return bad("alpha and put_alpha must be at least 1");
        }
        if self.level_rtt_thresholds.len() > crate::wire::MAX_LEVELS - 1 {
            return bad("too many levels");
        }
        if self.level_rtt_thresholds.windows(2).any(|w| w[1] >= w[0]) {
            return bad("level RTT thresholds must decrease with the level");
        }
        if !(0.0..=1.0).contains(&self.cluster_membership_fraction) {
            return bad("cluster membership fraction must be within 0..=1");
        }
        if self.cluster_age_tie < Duration::from_secs(2) {
            // Peers' cluster ages are kept to the second (see `cluster::peers::Stamp`).
            return bad("cluster_age_tie must be at least 2 s");
        }
        if self.cluster_size_hysteresis < 0.0 || !self.cluster_size_hysteresis.is_finite() {
            return bad("cluster size hysteresis must be a non-negative number");
        }
        if self.values_per_key == 0 || self.max_values_per_response == 0 {
            return bad("values per key and per response must be at least 1");
        }
        if self.min_ttl > self.max_ttl {
            return bad("min_ttl must not exceed max_ttl");
        }
        if self.max_keys == 0 || self.peer_info_capacity == 0 {
            return bad("max_keys and peer_info_capacity must be at least 1");
        }
        if u32::try_from(self.peer_info_capacity).is_err() {
            return bad("peer_info_capacity must fit in 32 bits");
        }
        if self.locality_interval.is_zero()
            || self.locality_interval.saturating_mul(2) > self.max_ttl
        {
            return bad("locality_interval must be positive and at most half of max_ttl");
        }
        if self.rpc_timeout.is_zero() || self.query_timeout.is_zero() {
            return bad("timeouts must be positive");
        }
        if self.cluster_check_interval.is_zero() || self.bucket_refresh_interval.is_zero() {
            return bad("periodic intervals must be positive");
        }
        if self.cluster_move_hold > self.cluster_move_hold_max {
            return bad("cluster_move_hold must not exceed cluster_move_hold_max");
        }
        if self.cluster_check_max_interval < self.cluster_check_interval {
            return bad("cluster_check_max_interval must be at least cluster_check_interval");
        }
        if self.max_values_per_response > crate::wire::MAX_VALUES {
            return bad("max_values_per_response exceeds the protocol limit");
        }
        if self.max_ttl > crate::wire::MAX_WIRE_DURATION {
            return bad("max_ttl exceeds the protocol limit");
        }
        if self.max_message_size < 1024 {
            return bad("max_message_size must be at least 1024 bytes");
        }
        Ok(())
    }
}

/// A [`Config`] that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dht config: {0}")]
pub struct ConfigError(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_corals_three_levels() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.levels(), 3);
        assert_eq!(c.threshold(0), None);
        assert_eq!(c.threshold(1), Some(Duration::from_millis(60)));
        assert_eq!(c.threshold(2), Some(Duration::from_millis(20)));
        assert_eq!(
            (c.k, c.alpha, c.values_per_key, c.loaded_threshold),
            (20, 3, 4, 12)
        );
    }

    #[test]
    fn rejects_a_locality_announcement_outliving_max_ttl_and_a_sub_second_age_tie() {
        let c = Config {
            locality_interval: Duration::from_secs(13 * 3600),
            ..Config::default()
        };
        assert!(c.validate().is_err(), "twice 13 h exceeds the 24 h max_ttl");
        let c = Config {
            cluster_age_tie: Duration::from_millis(500),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn rejects_increasing_thresholds() {
        let c = Config {
            level_rtt_thresholds: vec![Duration::from_millis(20), Duration::from_millis(60)],
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }
}
