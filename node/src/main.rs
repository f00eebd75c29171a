//! `reef`: run a node (and, later, make secrets, purge, and more).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use dht::{Event, NodeId};
use dns::answer::Settings;
use dns::{
    Geo, Handler, Location, Proxy, RosterSnapshot, Rrl, RrlConfig, StaticRoster, ZoneSuffix,
};
use node::udp::UdpDriver;

#[derive(Parser, Debug)]
#[command(name = "reef", version, about = "A peer-to-peer cooperative CDN node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node on embedded defaults: the DHT (loopback), the nameserver for the zone and
    /// the caching proxy. Every option can also be set as an environment variable
    /// `REEF_<OPTION>` (e.g. `REEF_HTTP=127.0.0.1:8081`).
    Node(NodeArgs),
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// UDP address of the DHT (loopback only until the secret-keyed overlay lands).
    #[arg(long, env = "REEF_LISTEN", default_value = "127.0.0.1:7946")]
    listen: SocketAddr,
    /// Another node's DHT address to join through (repeatable).
    #[arg(
        long = "bootstrap",
        env = "REEF_BOOTSTRAP",
        value_delimiter = ',',
        value_name = "ADDR"
    )]
    bootstrap: Vec<SocketAddr>,
    /// Address of the nameserver (UDP and TCP).
    #[arg(long, env = "REEF_DNS", default_value = "127.0.0.1:5353")]
    dns: SocketAddr,
    /// The network's DNS zone: `www.example.com.<zone>` names an origin.
    #[arg(long, env = "REEF_ZONE", default_value = "cdn")]
    zone: String,
    /// The address clients reach this node's proxy at (A/AAAA answers); defaults to the DNS
    /// address, or 127.0.0.1 if that is unspecified.
    #[arg(long, env = "REEF_ADVERTISE", value_name = "IP")]
    advertise: Option<IpAddr>,
    /// GeoIP database (MaxMind DB format, City or Country), reloaded when the file changes.
    #[arg(long, env = "REEF_GEOIP", value_name = "FILE")]
    geoip: Option<PathBuf>,
    /// This node's location, overriding the GeoIP lookup of its address.
    #[arg(long, env = "REEF_LOCATION", value_name = "LAT,LON", value_parser = parse_location)]
    location: Option<Location>,
    /// DNS responses per second per (client prefix, name) over UDP (response rate limiting);
    /// 0 = off.
    #[arg(long, env = "REEF_DNS_RATE_LIMIT", default_value_t = 20)]
    dns_rate_limit: u32,
    /// Address of the caching HTTP proxy.
    #[arg(long, env = "REEF_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Store responses with neither freshness information nor a validator for this many
    /// seconds (off by default: such responses are not stored).
    #[arg(long, env = "REEF_MIN_TTL", value_name = "SECS")]
    min_ttl: Option<u64>,
    /// Print one Common Log Format line per proxied request to standard output.
    #[arg(long, env = "REEF_ACCESS_LOG")]
    access_log: bool,
    /// Memory cache budget in bytes.
    #[arg(long, env = "REEF_CACHE_MEM", default_value_t = 256 << 20)]
    cache_mem: u64,
    /// Serve hosts outside the zone from this origin (reverse-proxy mode for one's own site).
    #[arg(long, env = "REEF_ORIGIN", value_name = "URL")]
    origin: Option<String>,
    /// Fetch from origins on loopback, private or link-local addresses (tests, local demos).
    #[arg(long, env = "REEF_ALLOW_PRIVATE_ORIGINS")]
    allow_private_origins: bool,
    /// Fixed address for an origin name, like curl's --resolve (repeatable): NAME=IP.
    #[arg(long = "resolve", env = "REEF_RESOLVE", value_delimiter = ',', value_name = "NAME=IP", value_parser = parse_resolve)]
    resolve: Vec<(String, IpAddr)>,
    /// Stop after this many seconds (for scripts and tests); runs until Ctrl-C otherwise.
    #[arg(long, env = "REEF_RUN_FOR", value_name = "SECONDS")]
    run_for: Option<u64>,
    /// Seed of the DHT's random choices (cluster IDs, refresh targets).
    #[arg(long, env = "REEF_SEED", default_value_t = 0)]
    seed: u64,
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

/// The caching proxy on `--http`.
async fn start_proxy(
    args: &NodeArgs,
) -> anyhow::Result<(SocketAddr, tokio::sync::watch::Sender<bool>)> {
    let zone = ZoneSuffix::parse(&args.zone)
        .map_err(|e| anyhow::anyhow!("--zone {:?}: {e}", args.zone))?;
    let mut config = proxy::Config::new(zone);
    config.cache_bytes = args.cache_mem;
    config.access_log = args.access_log;
    config.policy.min_ttl = args.min_ttl.map(Duration::from_secs);
    config.allow_private_origins = args.allow_private_origins;
    config.resolve = args.resolve.iter().cloned().collect();
    config.reverse_origin = match &args.origin {
        Some(url) => {
            Some(proxy::route::parse_origin(url).map_err(|e| anyhow::anyhow!("--origin: {e}"))?)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("starting the HTTP proxy on {}", args.http))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let proxy = proxy::Proxy::new(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    tokio::spawn(proxy::server::run(listener, proxy, stopped));
    Ok((addr, stop))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Node(args) => run_node(args).await,
    }
}

fn random_id() -> anyhow::Result<NodeId> {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| anyhow::anyhow!("no entropy source for the node ID"))?;
    Ok(NodeId(id))
}

/// The nameserver, answering with this node alone until the overlay supplies a roster.
async fn start_dns(args: &NodeArgs) -> anyhow::Result<dns::Running> {
    let zone = ZoneSuffix::parse(&args.zone)
        .map_err(|e| anyhow::anyhow!("--zone {:?}: {e}", args.zone))?;
    let advertise = args.advertise.unwrap_or(if args.dns.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        args.dns.ip()
    });
    let geo = match &args.geoip {
        Some(path) => {
            let geo = Geo::open(path)?;
            geo.watch(path.clone(), Duration::from_secs(10));
            geo
        }
        None => Geo::none(),
    };
    let me = Proxy {
        addr: advertise,
        location: args.location,
        spare: 1.0,
        overloaded: false,
        last_seen: Instant::now(),
        nameserver: true,
    };
    let roster = Arc::new(StaticRoster::new(RosterSnapshot::alone(me)));
    let rrl = Rrl::new(RrlConfig {
        responses_per_second: args.dns_rate_limit,
        ..RrlConfig::default()
    });
    let handler = Handler::new(roster, geo, Settings::new(zone), rrl);
    dns::start(args.dns, handler)
        .await
        .with_context(|| format!("starting the nameserver on {}", args.dns))
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let config = dht::Config {
        rng_seed: args.seed,
        ..dht::Config::default()
    };
    let mut driver = UdpDriver::bind(args.listen, config, random_id()?)
        .with_context(|| format!("starting the DHT on {}", args.listen))?;
    let addr = driver.local_addr()?;
    let id = driver.dht().contact().id;
    let dns = start_dns(&args).await?;
    let (http, stop_http) = start_proxy(&args).await?;
    println!("reef node {id}: DHT listening on udp {addr} (loopback only)");
    println!(
        "reef node: DNS for zone {} on udp+tcp {} (try: dig @{} -p {} www.example.com.{} A)",
        args.zone,
        dns.local_addr(),
        dns.local_addr().ip(),
        dns.local_addr().port(),
        args.zone
    );
    println!(
        "reef node: caching proxy on http://{http} (try: curl -H 'Host: www.example.com.{}' http://{http}/)",
        args.zone
    );
    println!(
        "reef node: this release runs the DHT, the nameserver and the proxy; the secret-keyed overlay comes later"
    );
    if !args.bootstrap.is_empty() {
        driver.bootstrap(args.bootstrap.clone());
    }
    let until = args
        .run_for
        .map(|s| Instant::now() + Duration::from_secs(s));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_dht = stop.clone();
    let mut dht = tokio::task::spawn_blocking(move || {
        driver.run(until, &stop_dht, |dht, event| match event {
            Event::BootstrapDone { known, .. } => {
                println!("reef node: bootstrap done, {known} contacts known");
            }
            Event::ClusterChanged {
                level,
                cluster,
                members,
            } => {
                println!(
                    "reef node: joined cluster {:x} at level {} ({members} members known)",
                    cluster.0, level.0
                );
            }
            other => tracing::debug!(node = %dht.contact().id, ?other, "dht event"),
        })
    });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let result = tokio::select! {
        r = &mut dht => r,
        _ = tokio::signal::ctrl_c() => {
            println!("reef node: stopping (SIGINT)");
            stop.store(true, Ordering::Relaxed);
            dht.await
        }
        _ = terminate.recv() => {
            println!("reef node: stopping (SIGTERM)");
            stop.store(true, Ordering::Relaxed);
            dht.await
        }
    };
    let _ = stop_http.send(true);
    dns.shutdown().await;
    result.context("the DHT task panicked")??;
    Ok(())
}
