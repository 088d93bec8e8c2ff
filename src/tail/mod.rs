//! (being written)
use crate::config::PostgresConfig;
#[derive(Debug)]
pub struct TailOptions { pub permanent_slot: Option<String> }
pub async fn run(_c: &PostgresConfig, _o: TailOptions) -> anyhow::Result<()> { anyhow::bail!("wip") }
