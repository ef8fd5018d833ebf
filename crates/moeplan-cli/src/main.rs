//! The `moeplan` binary: parses arguments and hands over to `dispatch`.
use std::process::ExitCode;

mod args;
mod commands;
mod dispatch;
mod output;

fn main() -> ExitCode {
    dispatch::run(<args::Cli as clap::Parser>::parse())
}
