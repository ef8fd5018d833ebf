//! The `moeplan` binary: parses arguments and hands over to `dispatch`.
use std::process::ExitCode;

mod args;
mod commands;
mod dispatch;
mod output;

fn main() -> ExitCode {
    let cli = match <args::Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(e) => return output::failure(output::Failure::Arguments(e)),
    };
    // A panic is a bug in moeplan, never the user's input: say so, and exit 3.
    std::panic::set_hook(Box::new(|info| output::internal_error(&info.to_string())));
    std::panic::catch_unwind(|| dispatch::run(cli))
        .unwrap_or_else(|_| output::failure(output::Failure::Internal))
}
