//! Throughput and CPU of the overlay's transport alone: TCP, the pre-shared-key layer, noise
//! and yamux, as two swarms on loopback carry 100 MiB over one stream. No proxy: the sender
//! writes from one buffer, the receiver only reads, so this is what any peer transfer costs
//! at least, before the receiving node hashes, stores and serves the object
//! (`scripts/bench-overlay.sh` sets it beside a whole peer transfer and an origin fetch).
//!
//! Run: `cargo bench -p reef-node --bench overlay_stack` (environment: RUNS, default 5).
//! Prints the median MB/s and the process's CPU time per 100 MiB (both swarms together).

use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, StreamProtocol};
use node::overlay::transport::{self, TransportConfig};
use node::secret::{NetworkSecret, PROTOCOL_VERSION};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/reef/bench-stack/1");
const OBJECT: usize = 100 << 20;
/// The size of the overlay's data frames (`transfer::MAX_DATA`).
const CHUNK: usize = 64 << 10;

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mut mbps, mut cpu_ms) = rt.block_on(measure(runs.max(1)))?;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "overlay stack alone, 100 MiB over one stream (median of {runs}): {:.0} MB/s, {:.0} ms CPU",
        median(&mut mbps),
        median(&mut cpu_ms)
    );
    Ok(())
}

/// MB/s and CPU milliseconds of each of `runs` transfers.
async fn measure(runs: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let psk = NetworkSecret::development().psk(PROTOCOL_VERSION);
    let config = TransportConfig::default();
    let mut a = transport::build(Keypair::generate_ed25519(), psk, &config)?;
    let mut b = transport::build(Keypair::generate_ed25519(), psk, &config)?;
    a.listen_on("/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>()?)?;
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = a.select_next_some().await {
            break address;
        }
    };
    let a_id = *a.local_peer_id();
    let mut incoming = a.behaviour().stream.new_control().accept(PROTOCOL)?;
    let mut control = b.behaviour().stream.new_control();
    tokio::spawn(async move {
        loop {
            a.select_next_some().await;
        }
    });
    b.dial(addr)?;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(
            b.select_next_some().await,
            SwarmEvent::ConnectionEstablished { .. }
        ) {}
    })
    .await?;
    tokio::spawn(async move {
        loop {
            b.select_next_some().await;
        }
    });
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            tokio::spawn(async move {
                let data = vec![7u8; CHUNK];
                for _ in 0..OBJECT / CHUNK {
                    stream.write_all(&data).await?;
                }
                stream.close().await
            });
        }
    });
    let (mut mbps, mut cpu_ms) = (Vec::new(), Vec::new());
    // One transfer to warm up (the stream protocol's negotiation, the windows).
    for run in 0..=runs {
        let (cpu0, t0) = (process_cpu()?, Instant::now());
        let transfer = async {
            let mut stream = control
                .open_stream(a_id, PROTOCOL)
                .await
                .map_err(|e| anyhow::anyhow!("opening a stream: {e}"))?;
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0;
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, anyhow::Error>(got);
                }
                got += n;
            }
        };
        let got = tokio::time::timeout(Duration::from_secs(60), transfer).await??;
        anyhow::ensure!(got == OBJECT, "received {got} bytes of {OBJECT}");
        let (secs, cpu) = (t0.elapsed().as_secs_f64(), process_cpu()? - cpu0);
        if run > 0 {
            mbps.push(OBJECT as f64 / secs / 1e6);
            cpu_ms.push(cpu.as_secs_f64() * 1e3);
        }
    }
    Ok((mbps, cpu_ms))
}

/// CPU time of this process so far (user and system, every thread), from `/proc/self/stat`
/// (in clock ticks of `USER_HZ`, which Linux fixes at 100 a second for user space).
fn process_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unreadable /proc/self/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("short /proc/self/stat"))?
            .parse()?)
    };
    // utime and stime are fields 14 and 15.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 10))
}
