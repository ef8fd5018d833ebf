//! Command-line definitions (clap). No logic lives here.
use clap::{Args, Parser, Subcommand};

/// Plan, check and explain parallel deployments of Mixture-of-Experts inference.
///
/// Exit codes: 0 success; 1 the input is valid but the answer is negative
/// (a deployment that does not fit, no layout meets the service levels);
/// 2 bad input (unreadable or invalid file, unknown model or GPU, invalid
/// layout); 3 internal error.
#[derive(Parser, Debug)]
#[command(name = "moeplan", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parameters, weight bytes, KV cache and FLOP per token of a model.
    Model(ModelArgs),
    /// List the built-in models and GPUs.
    Catalog(CatalogArgs),
    /// Print the JSON Schema of a native spec file (model or gpu).
    Schema(SchemaArgs),
}

/// Output options shared by every command.
#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Print machine-readable JSON (base units: bytes, FLOP, seconds).
    #[arg(long)]
    pub json: bool,
    /// Show the formula and inputs behind every figure.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// A catalog id (see `moeplan catalog`), a Hugging Face config.json, or a native model spec (.toml/.yaml/.json).
    pub model: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Which spec: model or gpu.
    #[arg(value_parser = ["model", "gpu"])]
    pub kind: String,
}
