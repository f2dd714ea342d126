//! The `slaf-convert` binary: parse, set up logging, run, map the error to an exit code.

use std::process::ExitCode;

use clap::Parser;
use slaf_convert::cli::{self, args::Cli};
use slaf_convert::logging;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.verbose, cli.quiet);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        // Async workers encode and write. The blocking pool is left alone: the reader holds
        // one blocking thread for a whole range and local object-store I/O needs others.
        builder.worker_threads(threads.into());
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slaf-convert: cannot start the async runtime: {e}");
            return ExitCode::from(slaf_convert::exit_code::INTERNAL);
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, naming the file and the problem; the code says what kind it is.
            eprintln!("slaf-convert: error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
