//! `link-peeler-relay bench` (filled in below).

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
