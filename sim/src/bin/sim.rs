//! `reef-sim`: placeholder until the simulator lands.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "reef-sim is not implemented yet; the DHT's scenario tests (cargo test -p reef-dht) are its precursor"
    )
}
