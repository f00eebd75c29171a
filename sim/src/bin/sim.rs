//! `reef-sim`: run a scenario preset for one or more overlay variants on one seed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sim::latency::LatencyKind;
use sim::scenario::Scenario;
use sim::{RunOptions, Variant, run_variants};

/// Parallel windows move nodes between threads, and with them what the nodes allocate and
/// free; mimalloc frees across threads without the lock glibc's arenas take. With glibc, two
/// threads ran 20,000 nodes slower than one (63.5 s against 59.5 s, lock waits a tenth of
/// the run); with mimalloc, 39 s against 51 s. It costs memory: 8.7 GB against 7.6 GB for
/// 100,000 nodes. It also backs its heap with transparent huge pages (where the kernel
/// allows them on request), which glibc needed a tunable and a restart of the program for:
/// a large run is gigabytes of node state touched at random, and with 4 KiB pages most
/// events missed the TLB (glibc without huge pages ran 10,000 nodes 7 times slower).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "reef-sim",
    version,
    about = "Simulate whole reef overlays in virtual time"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the scenario presets with their parameters.
    List,
    /// Run a scenario.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Scenario preset (see `reef-sim list`).
    #[arg(long)]
    scenario: String,
    /// Number of nodes (overrides the preset).
    #[arg(long)]
    nodes: Option<usize>,
    /// Seed; the same seed gives the same run. Also read from SIM_SEED.
    #[arg(long, env = "SIM_SEED", default_value_t = 1)]
    seed: u64,
    /// Variant to run (repeatable): coral, flat or none.
    #[arg(long = "variant", value_name = "VARIANT")]
    variants: Vec<Variant>,
    /// Run all variants side by side.
    #[arg(long)]
    compare: bool,
    /// Latency model (overrides the preset): planetlab or geo.
    #[arg(long)]
    latency: Option<LatencyKind>,
    /// Workload duration in seconds (overrides the preset).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Round-trip every DHT message through the wire format.
    #[arg(long)]
    wire: bool,
    /// Threads (default: one per core): variants run at once, each on its own thread, and
    /// threads left over share each run's hosts. Results do not depend on it; peak memory
    /// is that of the variants running together.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write SVG plots into this directory.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::List => {
            for s in Scenario::all() {
                println!(
                    "{}\n  {}\n  {}\n",
                    s.name,
                    s.description,
                    serde_json::to_string(&s)?
                );
            }
            Ok(())
        }
        Command::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut scenario = Scenario::named(&args.scenario).with_context(|| {
        let names: Vec<_> = Scenario::all().iter().map(|s| s.name).collect();
        format!(
            "unknown scenario {:?}; presets: {}",
            args.scenario,
            names.join(", ")
        )
    })?;
    if let Some(n) = args.nodes {
        anyhow::ensure!(n >= 1, "--nodes must be at least 1");
        scenario.nodes = n;
    }
    if let Some(k) = args.latency {
        scenario.latency.kind = k;
    }
    if let Some(d) = args.duration {
        anyhow::ensure!(
            d > 0.0 && d.is_finite(),
            "--duration must be a positive number of seconds"
        );
        scenario.duration_secs = d;
    }
    let options = RunOptions {
        seed: args.seed,
        variants: if args.compare || args.variants.is_empty() {
            Variant::ALL.to_vec()
        } else {
            args.variants.clone()
        },
        wire: args.wire,
        threads: args
            .threads
            .unwrap_or_else(RunOptions::default_threads)
            .max(1),
    };
    let variants = options.distinct_variants();
    eprintln!(
        "sim: seed={:#x} nodes={} scenario={} variants={}",
        args.seed,
        scenario.nodes,
        scenario.name,
        variants
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(",")
    );
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>6} [{bar:40}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    // Per variant: (virtual now, virtual end, events); the bar shows them together.
    let state = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let report = run_variants(&scenario, &options, &|variant, now, end, events| {
        let mut state = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.insert(variant, (now, end, events));
        let names: Vec<&str> = state.keys().map(|v| v.name()).collect();
        let fraction: f64 = state
            .values()
            .map(|(now, end, _)| *now as f64 / (*end).max(1) as f64)
            .sum::<f64>()
            / variants.len().max(1) as f64;
        let events: u64 = state.values().map(|(_, _, e)| e).sum();
        bar.set_prefix(names.join(","));
        bar.set_position((fraction * 1000.0) as u64);
        let wall = started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{:.0}s of {:.0}s virtual, {:.0} events/s",
            now as f64 / 1e6,
            end as f64 / 1e6,
            events as f64 / wall
        ));
        if started.elapsed() > Duration::from_secs(2) {
            bar.tick();
        }
    });
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("sim: report written to {}", path.display());
        }
        None => println!("{json}"),
    }
    for (name, v) in &report.variants {
        eprintln!(
            "sim: {name:>5}: {} requests, {} origin fetches, served local {:.3} l2 {:.3} l1 {:.3} l0 {:.3} origin {:.3}, lookup p50 {:.1} ms, hot-key max {}",
            v.requests,
            v.origin_fetches,
            v.served.local_cache,
            v.served.level2,
            v.served.level1,
            v.served.level0,
            v.served.origin,
            v.lookup_ms.p50,
            v.hot_key_load.max
        );
    }
    eprintln!(
        "sim: {} events in {:.1} s ({:.0} events/s), peak RSS {:.0} MiB",
        report.events, report.wall_s, report.events_per_s, report.peak_rss_mb
    );
    if let Some(dir) = &args.plot {
        let files =
            sim::plot::write_all(&report, dir).map_err(|e| anyhow::anyhow!("plotting: {e}"))?;
        eprintln!("sim: plots: {}", files.join(", "));
    }
    Ok(())
}
