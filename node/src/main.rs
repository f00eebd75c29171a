//! `reef`: run a node (and, later, make secrets, purge, and more).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use dht::{Event, NodeId};
use node::udp::UdpDriver;

#[derive(Parser, Debug)]
#[command(name = "reef", version, about = "A peer-to-peer cooperative CDN node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node on embedded defaults (at this stage: the DHT alone, on loopback).
    Node(NodeArgs),
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// UDP address of the DHT (loopback only until the secret-keyed overlay lands).
    #[arg(long, default_value = "127.0.0.1:7946")]
    listen: SocketAddr,
    /// Another node's DHT address to join through (repeatable).
    #[arg(long = "bootstrap", value_name = "ADDR")]
    bootstrap: Vec<SocketAddr>,
    /// Stop after this many seconds (for scripts and tests); runs until killed otherwise.
    #[arg(long, value_name = "SECONDS")]
    run_for: Option<u64>,
    /// Seed of the DHT's random choices (cluster IDs, refresh targets).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Node(args) => run_node(args),
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

fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let config = dht::Config {
        rng_seed: args.seed,
        ..dht::Config::default()
    };
    let mut driver = UdpDriver::bind(args.listen, config, random_id()?)
        .with_context(|| format!("starting the DHT on {}", args.listen))?;
    let addr = driver.local_addr()?;
    let id = driver.dht().contact().id;
    println!("reef node {id}: DHT listening on udp {addr} (loopback only)");
    println!(
        "reef node: this release runs the DHT alone; the proxy, DNS and secret-keyed overlay come later"
    );
    if !args.bootstrap.is_empty() {
        driver.bootstrap(args.bootstrap.clone());
    }
    let until = args
        .run_for
        .map(|s| Instant::now() + Duration::from_secs(s));
    driver.run(until, |dht, event| match event {
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
    })?;
    Ok(())
}
