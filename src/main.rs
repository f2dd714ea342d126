//! The `slaf-convert` binary: parse, set up logging, run, map the error to an exit code.
//! Argument parsing ([`cli`]) lives here, apart from the library: the library takes resolved
//! options and never sees clap.

use std::process::ExitCode;

mod cli;

use clap::Parser;
use cli::args::Cli;
use slaf_convert::logging;

/// Keep freed batch buffers in the process instead of handing them back to the kernel, in
/// one pool for all threads.
///
/// A conversion allocates and frees buffers of megabytes thousands of times. By default
/// glibc maps each anew and returns it on free, so every batch pays page faults and
/// zeroing (a sixth of a read's CPU); with mapping and trimming thresholds above a batch's
/// size the blocks are reused. But glibc gives threads arenas of their own (up to 8 per
/// core), each keeping what was freed in it: a buffer freed on a Lance writer thread could
/// not serve the reader thread's next batch, and convert's peak on 1M cells grew to 426 MiB.
/// With one arena it is 189 MiB, at the same speed (bench/RESULTS.md).
fn keep_freed_buffers() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// Bound what Lance holds while it builds a scalar index (`--create-indices`), unless the
/// user set these. Lance sorts a column's values for a BTREE in a memory pool of 150 MiB a
/// core and reads ahead up to 256 MiB on local disk; on 100,000 cells (120 M expression
/// rows, 2 cores) a `--create-indices` convert peaked at 479-490 MiB with those. With the
/// read-ahead at 32 MiB, a smaller pool is not a lower peak: 32 MiB a core peaked at
/// 248-381 MiB in 12 runs (the sort spills into more runs to merge), 64 MiB a core at
/// 222-233 MiB in 5 and 128 MiB a core at 312 MiB (bench/RESULTS.md). Both apply to every Lance scan of
/// the process (a widening rewrite at commit, `inspect`), which read fragments in order and
/// need no more. Set here, before any thread starts, because Lance reads them from the
/// environment only.
fn bound_lance_buffers() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = (64u64 << 20) * cores as u64;
    for (name, value) in [
        ("LANCE_MEM_POOL_SIZE", pool.to_string()),
        ("LANCE_DEFAULT_IO_BUFFER_SIZE", (32u64 << 20).to_string()),
    ] {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
}

fn main() -> ExitCode {
    keep_freed_buffers();
    bound_lance_buffers();
    slaf_convert::crash_report::install();
    let cli = Cli::parse();
    logging::init(cli.log_format.0, cli.verbose, cli.quiet);
    if let Some(library) = cli.libtiledb.clone() {
        slaf_convert::readers::soma::tiledb::set_library_path(library);
    }
    if cli.hdf5_timeout > 0 {
        slaf_convert::crash_report::watch_hdf5_calls(std::time::Duration::from_secs(
            cli.hdf5_timeout,
        ));
    }
    let verbose = cli.verbose > 0;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        // Async workers encode and write. The blocking pool is left alone: the reader holds
        // one blocking thread for a whole range and local object-store I/O needs others.
        builder.worker_threads(threads.into());
        // The pool that inflates HDF5 chunks follows the same limit.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.into())
            .build_global();
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
            if verbose {
                for cause in err.causes() {
                    eprintln!("  caused by: {cause}");
                }
            }
            ExitCode::from(err.exit_code())
        }
    }
}
