//! `reef node`: its options, and starting and stopping everything a node runs.
//!
//! Order matters: the proxy binds first (its address goes into the node's advert), then the
//! overlay (its bound address goes into the listening line), then the directory joins them,
//! then DNS and the admin port. One JSON line on stdout then says what was bound, so scripts
//! and tests can use port 0.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use dns::answer::Settings;
use dns::{Geo, Handler, Location, Rrl, RrlConfig, ZoneSuffix};
use libp2p::Multiaddr;
use tokio::sync::watch;

use crate::admin::{self, NodeState};
use crate::data_dir::DataDir;
use crate::directory::{DirectoryConfig, OverlayDirectory, ProxyHooks};
use crate::overlay::advert::multiaddr_ip;
use crate::overlay::codec::Load;
use crate::overlay::transfer::{self, TransferCounters};
use crate::overlay::{self, OverlayConfig, TransportConfig};
use crate::roster::{LiveRoster, Me};
use crate::secret::{NetworkSecret, PROTOCOL_VERSION};

/// Options of `reef node`. Every option can also be set as an environment variable
/// `REEF_<OPTION>` (e.g. `REEF_HTTP=127.0.0.1:8081`).
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// Read options from this TOML file (keys are these options' names); the command line
    /// and `REEF_*` variables win over it.
    #[arg(long, env = "REEF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overlay (libp2p) listen address.
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "REEF_P2P",
        default_value = "/ip4/127.0.0.1/tcp/4001"
    )]
    pub p2p: Multiaddr,
    /// Another node's overlay address to join through (repeatable). Without it, a node with
    /// a data directory rejoins through the peers it knew.
    #[arg(
        long = "bootstrap",
        env = "REEF_BOOTSTRAP",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub bootstrap: Vec<Multiaddr>,
    /// The network secret (`reef secret new` makes one). Without it the node uses the public
    /// development secret and keeps the overlay on loopback.
    #[arg(long, env = "REEF_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Keeps the node's identity and known peers across restarts.
    #[arg(long, env = "REEF_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin HTTP address: the status page at `/`, `/status` (JSON) and `/metrics`.
    #[arg(
        long,
        value_name = "ADDR",
        env = "REEF_ADMIN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin: SocketAddr,
    /// Also serve HTTPS on this address (HTTP/2 or HTTP/1.1 by ALPN); needs `--tls-cert`
    /// and `--tls-key` (a wildcard certificate for `*.<zone>` covers every single-label
    /// CDN name).
    #[arg(long, env = "REEF_TLS", value_name = "ADDR", requires_all = ["tls_cert", "tls_key"])]
    pub tls: Option<SocketAddr>,
    /// The certificate chain for `--tls` (PEM).
    #[arg(long, env = "REEF_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key for `--tls` (PEM).
    #[arg(long, env = "REEF_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The proxy address peers and DNS answers give out (defaults to the bound `--http`).
    #[arg(long, env = "REEF_PUBLIC_HTTP", value_name = "ADDR")]
    pub public_http: Option<SocketAddr>,
    /// Address of the nameserver (UDP and TCP).
    #[arg(
        long,
        value_name = "ADDR",
        env = "REEF_DNS",
        default_value = "127.0.0.1:5353"
    )]
    pub dns: SocketAddr,
    /// The network's DNS zone: `www.example.com.<zone>` names an origin.
    #[arg(long, value_name = "ZONE", env = "REEF_ZONE", default_value = "cdn")]
    pub zone: String,
    /// The address clients reach this node's proxy at (A/AAAA answers); defaults to the
    /// public HTTP address's IP.
    #[arg(long, env = "REEF_ADVERTISE", value_name = "IP")]
    pub advertise: Option<IpAddr>,
    /// GeoIP database (MaxMind DB format, City or Country), reloaded when the file changes.
    #[arg(long, env = "REEF_GEOIP", value_name = "FILE")]
    pub geoip: Option<PathBuf>,
    /// This node's location, overriding the GeoIP lookup of its address.
    #[arg(long, env = "REEF_LOCATION", value_name = "LAT,LON", value_parser = parse_location)]
    pub location: Option<Location>,
    /// DNS responses per second per (client prefix, name) over UDP (response rate limiting);
    /// 0 = off.
    #[arg(
        long,
        value_name = "N",
        env = "REEF_DNS_RATE_LIMIT",
        default_value_t = 20
    )]
    pub dns_rate_limit: u32,
    /// Address of the caching HTTP proxy.
    #[arg(
        long,
        value_name = "ADDR",
        env = "REEF_HTTP",
        default_value = "127.0.0.1:8080"
    )]
    pub http: SocketAddr,
    /// Store responses with neither freshness information nor a validator for this many
    /// seconds (off by default: such responses are not stored).
    #[arg(long, env = "REEF_MIN_TTL", value_name = "SECS")]
    pub min_ttl: Option<u64>,
    /// Print one Common Log Format line per proxied request to standard output.
    #[arg(long, env = "REEF_ACCESS_LOG")]
    pub access_log: bool,
    /// Memory cache budget in bytes.
    #[arg(long, value_name = "BYTES", env = "REEF_CACHE_MEM", default_value_t = 256 << 20)]
    pub cache_mem: u64,
    /// Disk cache budget in bytes, in `<data-dir>/cache` (kept across restarts); only with
    /// `--data-dir`; 0 turns it off.
    #[arg(long, value_name = "BYTES", env = "REEF_CACHE_DISK", default_value_t = 1 << 30)]
    pub cache_disk: u64,
    /// Disk-cache files kept open to send the bodies of objects also in memory straight from
    /// the page cache (sendfile), as nginx sends its cache files; 0 writes every body from
    /// memory. One descriptor each, while the object stays in memory; never more than a
    /// quarter of the process's open-file limit.
    #[arg(long, value_name = "N", env = "REEF_SENDFILE_FILES", default_value_t = proxy::zerocopy::DEFAULT_OPEN_FILES)]
    pub sendfile_files: usize,
    /// Largest object fetched and cached, in bytes.
    #[arg(long, value_name = "BYTES", env = "REEF_MAX_OBJECT", default_value_t = 50 << 20)]
    pub max_object: u64,
    /// Bytes of one response body held in memory at most while it arrives; the rest goes to
    /// an unlinked temporary file (in the data directory, else /var/tmp). The memory cache
    /// keeps such an object in its file, counted in --cache-mem at full size; one larger than
    /// --cache-mem is cached on disk only, or passes through without a disk cache.
    #[arg(long, value_name = "BYTES", env = "REEF_SPILL_ABOVE", default_value_t = 16 << 20)]
    pub spill_above: u64,
    /// Serve hosts outside the zone from this origin (reverse-proxy mode for one's own site).
    #[arg(long, env = "REEF_ORIGIN", value_name = "URL")]
    pub origin: Option<String>,
    /// With `--origin`: pass methods other than GET and HEAD to it, uncached (a successful
    /// POST, PUT or DELETE invalidates the cached URL). Never for CDN names.
    #[arg(long, env = "REEF_PASS_METHODS", requires = "origin")]
    pub pass_methods: bool,
    /// Fetch from origins on loopback, private or link-local addresses (tests, local demos).
    #[arg(long, env = "REEF_ALLOW_PRIVATE_ORIGINS")]
    pub allow_private_origins: bool,
    /// Fixed address for an origin name, like curl's --resolve (repeatable): NAME=IP.
    #[arg(long = "resolve", env = "REEF_RESOLVE", value_delimiter = ',', value_name = "NAME=IP", value_parser = parse_resolve)]
    pub resolve: Vec<(String, IpAddr)>,
    /// This node's name in `Cache-Status`: a letter, then letters, digits, `.`, `-` or `_`
    /// (at most 64). Unset: `reef-` and the last 8 characters of its peer ID.
    #[arg(long, env = "REEF_NODE_NAME", value_name = "NAME", value_parser = parse_node_name)]
    pub node_name: Option<String>,
    /// Nameserver for origin names, like Squid's dns_nameservers (repeatable): IP or
    /// IP:PORT (port 53 if none). Unset: the system's resolver configuration.
    #[arg(
        long = "origin-dns",
        env = "REEF_ORIGIN_DNS",
        value_delimiter = ',',
        value_name = "ADDR",
        value_parser = parse_nameserver
    )]
    pub origin_dns: Vec<SocketAddr>,
    /// Bytes served to clients per hour; past it the node redirects clients to origins (302)
    /// and leaves the directory and DNS answers for 30 minutes.
    #[arg(long, env = "REEF_BANDWIDTH_QUOTA", value_name = "BYTES_PER_HOUR")]
    pub bandwidth_quota: Option<u64>,
    /// Requests per second one client (an IPv4 address or IPv6 /64) may sustain; beyond it,
    /// 429. 0 = no limit.
    #[arg(
        long,
        value_name = "PER_SEC",
        env = "REEF_CLIENT_RATE",
        default_value_t = 50.0
    )]
    pub client_rate: f64,
    /// Requests one client may make at once before `--client-rate` applies.
    #[arg(
        long,
        value_name = "N",
        env = "REEF_CLIENT_BURST",
        default_value_t = 200.0
    )]
    pub client_burst: f64,
    /// Open client connections in all; 0 = no limit.
    #[arg(
        long,
        value_name = "N",
        env = "REEF_MAX_CONNECTIONS",
        default_value_t = 16_384
    )]
    pub max_connections: usize,
    /// Open connections from one client; 0 = no limit.
    #[arg(
        long,
        value_name = "N",
        env = "REEF_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 256
    )]
    pub max_connections_per_client: usize,
    /// Seconds a client has to send a request's headers (against slowloris), and that an idle
    /// keep-alive connection stays open.
    #[arg(
        long,
        value_name = "SECS",
        env = "REEF_HEADER_READ_TIMEOUT",
        default_value_t = 10
    )]
    pub header_read_timeout: u64,
    /// Largest request head (request line and headers) read; a longer one is refused.
    #[arg(long, value_name = "BYTES", env = "REEF_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Longest a directory lookup may take before a miss goes to the origin, in ms.
    #[arg(
        long,
        value_name = "MS",
        env = "REEF_LOCATE_BUDGET_MS",
        default_value_t = 300
    )]
    pub locate_budget_ms: u64,
    /// Purges accepted per origin per minute (publishers' signed purges, from clients and
    /// from the overlay alike).
    #[arg(
        long,
        value_name = "N",
        env = "REEF_PURGES_PER_ORIGIN",
        default_value_t = 60
    )]
    pub purges_per_origin: u32,
    /// Purges accepted per minute from all origins together.
    #[arg(
        long,
        value_name = "N",
        env = "REEF_PURGES_PER_NODE",
        default_value_t = 600
    )]
    pub purges_per_node: u32,
    /// A purge signed further than this many seconds from this node's clock is refused.
    #[arg(
        long,
        value_name = "SECS",
        env = "REEF_PURGE_MAX_SKEW",
        default_value_t = 300
    )]
    pub purge_max_skew: u64,
    /// Keep a site's /.well-known/reef.json at least this many seconds (also a missing one).
    #[arg(
        long,
        value_name = "SECS",
        env = "REEF_SITE_MIN_TTL",
        default_value_t = 60
    )]
    pub site_min_ttl: u64,
    /// Keep a site's /.well-known/reef.json at most this many seconds.
    #[arg(
        long,
        value_name = "SECS",
        env = "REEF_SITE_MAX_TTL",
        default_value_t = 3600
    )]
    pub site_max_ttl: u64,
    /// Most object transfers served to peers at once.
    #[arg(
        long,
        value_name = "N",
        env = "REEF_MAX_PEER_TRANSFERS",
        default_value_t = 256
    )]
    pub max_peer_transfers: usize,
    /// Stop after this many seconds (for scripts and tests); runs until Ctrl-C otherwise.
    #[arg(long, env = "REEF_RUN_FOR", value_name = "SECONDS")]
    pub run_for: Option<u64>,
    /// Seed of the DHT's random choices (cluster IDs, refresh targets).
    #[arg(long, value_name = "N", env = "REEF_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Protocol version to key the overlay with (tests of incompatible releases only).
    #[arg(long, env = "REEF_PROTOCOL_VERSION", hide = true, default_value = PROTOCOL_VERSION)]
    pub protocol_version: String,
}

fn parse_location(s: &str) -> Result<Location, String> {
    Location::parse_point(s)
}

fn parse_resolve(s: &str) -> Result<(String, IpAddr), String> {
    let (name, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=IP"))?;
    let ip = ip
        .parse()
        .map_err(|_| format!("{ip:?}: not an IP address"))?;
    Ok((name.to_ascii_lowercase(), ip))
}

/// Whether a multiaddr's IP is loopback.
fn is_loopback(addr: &Multiaddr) -> bool {
    multiaddr_ip(addr).is_some_and(|ip| ip.is_loopback())
}

/// The secret the node runs with; the development one only on loopback.
fn secret(args: &NodeArgs) -> anyhow::Result<NetworkSecret> {
    match &args.secret_file {
        Some(path) => Ok(NetworkSecret::load(path)?),
        None => {
            if !is_loopback(&args.p2p) {
                anyhow::bail!(
                    "--p2p {} is not loopback: without --secret-file the node uses the public development secret, which would let anyone join; make a secret with `reef secret new --out FILE`",
                    args.p2p
                );
            }
            eprintln!(
                "WARNING: no --secret-file: using the built-in DEVELOPMENT secret (public, loopback only). Make a real one with `reef secret new --out FILE`."
            );
            Ok(NetworkSecret::development())
        }
    }
}

/// The caching proxy on `--http`.
async fn start_proxy(
    args: &NodeArgs,
    data: Option<&DataDir>,
    node_name: String,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, Option<SocketAddr>, Arc<proxy::Proxy>)> {
    let zone = ZoneSuffix::parse(&args.zone)
        .map_err(|e| anyhow::anyhow!("--zone {:?}: {e}", args.zone))?;
    let mut config = proxy::Config::new(zone);
    config.node_name = node_name;
    config.cache_bytes = args.cache_mem;
    config.max_object_bytes = args.max_object;
    config.spill_above = args.spill_above;
    if let Some(d) = data {
        let spill = d.path().join("tmp");
        std::fs::create_dir_all(&spill).with_context(|| format!("creating {}", spill.display()))?;
        config.spill_dir = Some(spill);
    }
    config.access_log = args.access_log;
    config.bandwidth_quota = args.bandwidth_quota;
    config.pass_methods = args.pass_methods;
    config.limits = proxy::limits::LimitsConfig {
        requests_per_second: args.client_rate,
        burst: args.client_burst,
        connections_per_client: args.max_connections_per_client,
        connections: args.max_connections,
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        max_header_bytes: args.max_header_bytes,
    };
    if let Some(d) = data.filter(|_| args.cache_disk > 0) {
        let root = d.path().join("cache");
        let tier = proxy::disk::DiskTier::open(&root, args.cache_disk)
            .with_context(|| format!("opening the disk cache in {}", root.display()))?
            .with_open_files(args.sendfile_files);
        tracing::info!(
            objects = tier.len(),
            bytes = tier.bytes(),
            // The bound in force: at most a quarter of the open-file limit.
            sendfile_files = tier.open_files_max(),
            "disk cache opened"
        );
        config.disk = Some(Arc::new(tier));
    }
    config.policy.min_ttl = args.min_ttl.map(Duration::from_secs);
    config.sites.min_ttl = Duration::from_secs(args.site_min_ttl);
    config.sites.max_ttl = Duration::from_secs(args.site_max_ttl);
    config.purge.per_origin_per_minute = args.purges_per_origin;
    config.purge.per_node_per_minute = args.purges_per_node;
    config.purge.max_skew = Duration::from_secs(args.purge_max_skew);
    config.allow_private_origins = args.allow_private_origins;
    config.resolve = args.resolve.iter().cloned().collect();
    config.origin_nameservers = args.origin_dns.clone();
    config.reverse_origin = match &args.origin {
        Some(url) => {
            Some(proxy::route::parse_origin(url).map_err(|e| anyhow::anyhow!("--origin: {e}"))?)
        }
        None => None,
    };
    let listener = proxy::server::bind(args.http)
        .with_context(|| format!("starting the HTTP proxy on {}", args.http))?;
    let addr = listener.local_addr()?;
    let proxy = proxy::Proxy::new(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let https = match (&args.tls, &args.tls_cert, &args.tls_key) {
        (Some(tls_addr), Some(cert), Some(key)) => {
            let tls = proxy::tls::server_config(cert, key)?;
            let tls_listener = proxy::server::bind(*tls_addr)
                .with_context(|| format!("starting HTTPS on {tls_addr}"))?;
            let bound = tls_listener.local_addr()?;
            tokio::spawn(proxy::server::run_tls(
                tls_listener,
                proxy.clone(),
                tls,
                stop.clone(),
            ));
            Some(bound)
        }
        _ => None,
    };
    tokio::spawn(proxy::server::run(listener, proxy.clone(), stop));
    Ok((addr, https, proxy))
}

/// The nameserver, answering with the live proxies of the overlay.
async fn start_dns(
    args: &NodeArgs,
    roster: Arc<LiveRoster>,
) -> anyhow::Result<(dns::Running, Arc<dns::handler::DnsStats>)> {
    let zone = ZoneSuffix::parse(&args.zone)
        .map_err(|e| anyhow::anyhow!("--zone {:?}: {e}", args.zone))?;
    let geo = match &args.geoip {
        Some(path) => {
            let geo = Geo::open(path)?;
            geo.watch(path.clone(), Duration::from_secs(10));
            geo
        }
        None => Geo::none(),
    };
    let rrl = Rrl::new(RrlConfig {
        responses_per_second: args.dns_rate_limit,
        ..RrlConfig::default()
    });
    let handler = Handler::new(roster, geo, Settings::new(zone), rrl);
    let stats = handler.stats();
    let running = dns::start(args.dns, handler)
        .await
        .with_context(|| format!("starting the nameserver on {}", args.dns))?;
    Ok((running, stats))
}

/// This node's load as the proxy sees it (a dropped proxy is withdrawn).
fn load_of(proxy: &Arc<proxy::Proxy>) -> Box<dyn Fn() -> Load + Send + Sync> {
    let p = Arc::downgrade(proxy);
    Box::new(move || match p.upgrade() {
        Some(p) => Load {
            withdrawn: p.over_quota(),
            spare: p.spare() as f32,
        },
        None => Load {
            withdrawn: true,
            spare: 0.0,
        },
    })
}

/// How often the known peers are saved to the data directory.
const SAVE_PEERS_EVERY: Duration = Duration::from_secs(60);

async fn save_peers(state: &NodeState, data: &DataDir) {
    let Some(status) = state.status().await else {
        return;
    };
    let peers: Vec<Multiaddr> = status
        .peers
        .iter()
        .filter_map(|p| format!("{}/p2p/{}", p.p2p, p.peer).parse().ok())
        .collect();
    if let Err(e) = data.save_peers(&peers) {
        tracing::warn!(error = %e, "could not save the known peers");
    }
}

/// An `--origin-dns` nameserver: IP:PORT, or an IP alone (port 53).
fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{s:?}: an IP address, with or without :PORT"))
}

/// A `--node-name`: a token that needs no quoting in `Cache-Status` (RFC 9211).
fn parse_node_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(s.to_string())
    } else {
        Err("a letter, then letters, digits, '.', '-' or '_' (at most 64)".into())
    }
}

/// The node's name in `Cache-Status`: `--node-name`, else `reef-` and the end of its peer ID
/// (stable across restarts with `--data-dir`), so an operator reading a response's
/// `Cache-Status` can tell which nodes it passed through.
fn node_name(args: &NodeArgs, peer: &libp2p::PeerId) -> String {
    if let Some(name) = &args.node_name {
        return name.clone();
    }
    let id = peer.to_string();
    let tail = id.get(id.len().saturating_sub(8)..).unwrap_or(&id);
    format!("reef-{tail}")
}

/// Runs a node until Ctrl-C, SIGTERM or `--run-for`.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let secret = secret(&args)?;
    let data = match &args.data_dir {
        Some(dir) => Some(DataDir::open(dir)?),
        None => None,
    };
    let key = match &data {
        Some(d) => d.identity()?,
        None => libp2p::identity::Keypair::generate_ed25519(),
    };
    let mut bootstrap = args.bootstrap.clone();
    if bootstrap.is_empty()
        && let Some(d) = &data
    {
        bootstrap = d.peers();
        if !bootstrap.is_empty() {
            tracing::info!(
                peers = bootstrap.len(),
                "rejoining through the peers known last time"
            );
        }
    }
    let (stop_tx, stop) = watch::channel(false);
    let name = node_name(&args, &key.public().to_peer_id());
    let (http, https, proxy) = start_proxy(&args, data.as_ref(), name, stop.clone()).await?;
    // What peers and DNS give out: --public-http, else the bound address with --advertise's
    // IP (a proxy on 0.0.0.0 is reached at its advertised address).
    let public_http = args
        .public_http
        .or_else(|| args.advertise.map(|ip| SocketAddr::new(ip, http.port())))
        .unwrap_or(http);
    let dht = dht::Config {
        rng_seed: args.seed,
        // Coral's l = 4 spreads a hot key's values over more nodes, but a crowd's pending
        // claims must meet at one node to be seen together (and one claimant chosen): with 4,
        // the fifth claimant's value spills elsewhere and lookups see only part of them.
        values_per_key: 8,
        ..dht::Config::default()
    };
    let (purges_tx, purges_rx) = tokio::sync::mpsc::channel(crate::purges::QUEUE);
    let (overlay, overlay_task) = overlay::start(
        OverlayConfig {
            listen: args.p2p.clone(),
            bootstrap,
            secret,
            key,
            http: Some(public_http),
            transport: TransportConfig {
                protocol_version: args.protocol_version.clone(),
                ..TransportConfig::default()
            },
            dht,
            load: load_of(&proxy),
            purges: Some(purges_tx),
        },
        stop.clone(),
    )
    .await?;
    tokio::spawn(crate::purges::check_flooded(
        overlay.clone(),
        proxy.clone(),
        purges_rx,
    ));
    let directory = OverlayDirectory::new(
        overlay.clone(),
        DirectoryConfig {
            locate_budget: Duration::from_millis(args.locate_budget_ms),
            ..DirectoryConfig::default()
        },
    );
    let (cached, withdrawn) = (Arc::downgrade(&proxy), Arc::downgrade(&proxy));
    directory.set_hooks(ProxyHooks {
        still_cached: Box::new(move |url| {
            cached.upgrade().is_some_and(|p| p.store().contains(url))
        }),
        withdrawn: Box::new(move || withdrawn.upgrade().is_some_and(|p| p.over_quota())),
    });
    proxy.set_directory(directory.clone());
    let transfers = Arc::new(TransferCounters::default());
    tokio::spawn(transfer::serve(
        overlay.streams(),
        proxy.clone(),
        args.max_peer_transfers,
        transfers.clone(),
    ));
    // The address A/AAAA answers give for this node: --advertise, else the public HTTP
    // address, else (a proxy on all interfaces) the overlay's advertised IP.
    let overlay_ip = multiaddr_ip(&overlay.me().p2p).filter(|ip| !ip.is_unspecified());
    let advertise = args
        .advertise
        .unwrap_or(if public_http.ip().is_unspecified() {
            overlay_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
        } else {
            public_http.ip()
        });
    let roster = LiveRoster::start(
        overlay.clone(),
        Me {
            addr: advertise,
            location: args.location,
        },
        load_of(&proxy),
    );
    let (dns, dns_stats) = start_dns(&args, roster).await?;
    let state = Arc::new(NodeState {
        overlay: overlay.clone(),
        proxy: proxy.clone(),
        directory,
        transfers,
        dns: dns_stats,
        started: Instant::now(),
        history: Arc::new(admin::History::default()),
    });
    admin::History::spawn_sampler(&state.history, proxy.clone());
    let admin_listener = tokio::net::TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("starting the admin port on {}", args.admin))?;
    let admin_addr = admin_listener.local_addr()?;
    tokio::spawn(admin::run(admin_listener, state.clone(), stop.clone()));
    let listening = serde_json::json!({
        "event": "listening",
        "node_id": crate::overlay::advert::hex(&crate::overlay::advert::node_id(&overlay.peer_id())),
        "peer_id": overlay.peer_id().to_string(),
        "http": http.to_string(),
        "https": https.map(|a| a.to_string()),
        "p2p": format!("{}/p2p/{}", overlay.me().p2p, overlay.peer_id()),
        "admin": admin_addr.to_string(),
        "dns": dns.local_addr().to_string(),
        "zone": args.zone,
    });
    println!("{listening}");
    tracing::info!(
        "reef node up: proxy http://{http} (try: curl -H 'Host: www.example.com.{zone}' http://{http}/), DNS {dns_addr} (try: dig @{dns_ip} -p {dns_port} www.example.com.{zone} A), admin http://{admin_addr}/status",
        zone = args.zone,
        dns_addr = dns.local_addr(),
        dns_ip = dns.local_addr().ip(),
        dns_port = dns.local_addr().port(),
    );
    let until = args.run_for.map(Duration::from_secs);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut save_tick = tokio::time::interval(SAVE_PEERS_EVERY);
    let deadline = async {
        match until {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("stopping (SIGINT)");
                break;
            }
            _ = terminate.recv() => {
                tracing::info!("stopping (SIGTERM)");
                break;
            }
            _ = save_tick.tick() => {
                if let Some(d) = &data {
                    save_peers(&state, d).await;
                }
            }
        }
    }
    if let Some(d) = &data {
        save_peers(&state, d).await;
    }
    let _ = stop_tx.send(true);
    let _ = overlay_task.await;
    dns.shutdown().await;
    Ok(())
}
