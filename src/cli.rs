//! One function per subcommand; turns parsed arguments into library calls and prints results.

pub mod args;
pub mod value_enums;

use std::path::{Path, PathBuf};

use slaf_convert::error::{Error, Result};
use slaf_convert::workflow::commit::append;
use slaf_convert::workflow::convert::{
    convert_manifest, read_only, single_input_manifest, ConvertOptions,
};
use slaf_convert::workflow::manifest::{Manifest, ManifestOptions, Mode};
use slaf_convert::workflow::plan::{Plan, ShardSize};
use slaf_convert::workflow::shard::{
    run_shard as run_shard_impl, Placement, Receipt, ShardTask, RECEIPT_FILE,
};
use slaf_convert::workflow::{fetch, remote};

use self::args::{Command, ConvertArgs, PlanArgs, ShardArgs};
use slaf_convert::readers::tenx::TenxOptions;
use slaf_convert::readers::{ReadOptions, SomaOptions, ValueScan};

/// Run the parsed command.
pub async fn run(command: Command) -> Result<()> {
    for (role, path, stores) in path_arguments(&command) {
        slaf_convert::location::check_path(path, role, stores).map_err(Error::Usage)?;
    }
    match command {
        Command::Convert(args) => run_convert(args).await,
        Command::Plan(args) => run_plan(args).await,
        Command::Shard(args) => run_shard(args).await,
        Command::Commit(args) => {
            let mut plan = Plan::load(&args.plan)?;
            let in_store = args.dataset.as_deref().unwrap_or(&plan.output);
            if plan.append.is_some() && fetch::is_store(in_store) {
                return Err(Error::Usage(
                    "an append commits into a local dataset, not an object store URI".into(),
                ));
            }
            let (location, marker) = match args.dataset.as_deref() {
                // Staged shards: committed in a local temporary directory, then uploaded.
                _ if fetch::is_store(in_store) && any_staged(&args.shards) => {
                    let temp = args.temp_dir.as_deref();
                    let marker = remote::commit_to_store(&plan, &args.shards, in_store, temp);
                    (in_store.to_path_buf(), marker.await?)
                }
                // Shards that wrote into the store: committed there.
                _ if fetch::is_store(in_store) => {
                    plan.output = in_store.to_path_buf();
                    let marker = remote::commit_in_store(&plan, &args.shards);
                    (plan.output.clone(), marker.await?)
                }
                dataset => {
                    if let Some(dataset) = dataset {
                        // The receipts name the plan by hash; where the dataset goes is not
                        // part of it.
                        plan.output =
                            std::path::absolute(dataset).map_err(|e| Error::io(dataset, e))?;
                        if let Some(base) = &mut plan.append {
                            // The dataset appended to is the one named here; commit checks
                            // it is the one the plan saw.
                            base.dataset = plan.output.clone();
                        }
                    }
                    let marker = slaf_convert::workflow::commit::commit(&plan, &args.shards);
                    (plan.output.clone(), marker.await?)
                }
            };
            println!(
                "{}: committed {} cells x {} genes, {} expression rows",
                location.display(),
                marker.n_cells,
                marker.n_genes,
                marker.expression_rows
            );
            Ok(())
        }
        Command::Schema { name } => {
            let text = slaf_convert::workflow::schemas::schema(&name)
                .ok_or_else(|| Error::Usage(format!("no schema called {name}")))?;
            print!("{text}");
            Ok(())
        }
        Command::Inspect(args) => {
            print!(
                "{}",
                slaf_convert::slaf::inspect::describe(&args.dataset, args.rows).await?
            );
            Ok(())
        }
        Command::Compact(args) => {
            let tables = slaf_convert::compact::compact(
                &args.dataset,
                args.target_rows,
                args.remove_old_versions,
            )
            .await?;
            for t in tables {
                println!(
                    "{}: {}: {} -> {} fragments (version {})",
                    args.dataset.display(),
                    t.table,
                    t.fragments_before,
                    t.fragments_after,
                    t.version
                );
            }
            Ok(())
        }
        Command::Validate(args) => {
            let report = slaf_convert::validate::validate(&args.dataset).await?;
            if args.json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                println!("{text}");
            } else {
                print!("{}", slaf_convert::validate::describe(&report));
            }
            if report.ok {
                return Ok(());
            }
            Err(Error::invalid(
                &args.dataset,
                format!(
                    "{} kinds of violation (listed above)",
                    report.violations.len()
                ),
            ))
        }
    }
}

/// Whether any of commit's shard arguments is a staged shard (a directory whose receipt says
/// its data files are in it); receipts of shards that wrote into the dataset are not.
fn any_staged(shards: &[PathBuf]) -> bool {
    shards.iter().filter(|s| s.is_dir()).any(|dir| {
        let receipt = dir.join(RECEIPT_FILE);
        // An unreadable receipt is reported by the commit that reads it.
        Receipt::load(&receipt).map_or(true, |r| matches!(r.placement, Placement::Staged { .. }))
    })
}

/// Every path the command was given, with the argument it came in and whether an object
/// store URI may stand there.
fn path_arguments(command: &Command) -> Vec<(&'static str, &Path, bool)> {
    let given: Vec<(&'static str, Option<&Path>, bool)> = match command {
        Command::Convert(a) => vec![
            ("INPUT", a.input.as_deref(), true),
            ("OUTPUT", a.output.as_deref(), true),
            ("--manifest", a.manifest.as_deref(), false),
            ("--temp-dir", a.temp_dir.as_deref(), false),
        ],
        Command::Plan(a) => vec![
            ("MANIFEST", Some(&a.manifest), false),
            ("--output", Some(&a.output), false),
            ("--dataset", a.dataset.as_deref(), true),
        ],
        Command::Shard(a) => vec![
            ("PLAN", Some(&a.plan), false),
            ("--output", a.output.as_deref(), false),
            ("--receipt", a.receipt.as_deref(), false),
            ("--inputs", a.inputs.as_deref(), false),
        ],
        Command::Commit(a) => [
            ("PLAN", Some(a.plan.as_path()), false),
            ("--dataset", a.dataset.as_deref(), true),
            ("--temp-dir", a.temp_dir.as_deref(), false),
        ]
        .into_iter()
        .chain(
            a.shards
                .iter()
                .map(|s| ("SHARDS", Some(s.as_path()), false)),
        )
        .collect(),
        Command::Inspect(a) => vec![("DATASET", Some(&a.dataset), true)],
        Command::Validate(a) => vec![("DATASET", Some(&a.dataset), false)],
        Command::Compact(a) => vec![("DATASET", Some(&a.dataset), false)],
        Command::Schema { .. } => Vec::new(),
    };
    (given.into_iter())
        .filter_map(|(role, path, stores)| path.map(|p| (role, p, stores)))
        .collect()
}

async fn run_plan(args: PlanArgs) -> Result<()> {
    let mut manifest = Manifest::load(&args.manifest)?;
    if let Some(dataset) = args.dataset {
        manifest.output = match fetch::is_store(&dataset) {
            true => dataset,
            false => std::path::absolute(&dataset).map_err(|e| Error::io(&dataset, e))?,
        };
    }
    let size = ShardSize {
        cells_per_shard: args.cells_per_shard,
        shards: args.shards,
        min_cells_per_shard: None,
    };
    manifest.check_output_apart()?;
    let values = if args.read_all_values {
        ValueScan::Full
    } else {
        ValueScan::RowsOnly
    };
    // Inputs in object stores are scanned from copies fetched (or stand-ins made) for the
    // plan alone, removed afterwards; the plan names them by their URIs, and each shard
    // reaches its own.
    let scratch = fetch::scratch(None)?;
    // The rows-only scan reads an HDF5 input's indptr and a sample: it is read in the store.
    let hdf5 = match values {
        ValueScan::Full => fetch::Hdf5Inputs::Fetched,
        ValueScan::RowsOnly => fetch::Hdf5Inputs::InPlace,
    };
    let (local, fetched) = fetch::fetch_inputs(&manifest, scratch.path(), hdf5).await?;
    let existing = match local.mode {
        Mode::Append => Some(append::read_existing(&local.output).await?),
        Mode::Create => None,
    };
    let mut plan = Plan::build_onto(&local, size, values, existing.as_ref())?;
    fetched.name_in(&mut plan);
    plan.save(&args.output)?;
    tracing::info!(event = "plan.done", plan_hash = %plan.plan_hash, shards = plan.shards.len(), n_cells = plan.n_cells, "planned {} shards", plan.shards.len());
    if args.print_shards {
        println!("{}", plan.shards.len());
    } else {
        println!(
            "{}: {} shards over {} cells ({} inputs), plan {}",
            args.output.display(),
            plan.shards.len(),
            plan.n_cells,
            plan.inputs.len(),
            plan.plan_hash
        );
    }
    Ok(())
}

/// `I-of-N` (1-based) to a 0-based index, checked against the plan's shard count.
fn parse_shard(text: &str, n: usize) -> Result<usize> {
    let bad = || {
        Error::Usage(format!(
            "--shard '{text}': expected I-of-N with 1 <= I <= N"
        ))
    };
    let (i, total) = text.split_once("-of-").ok_or_else(bad)?;
    let (i, total): (usize, usize) = (
        i.parse().map_err(|_| bad())?,
        total.parse().map_err(|_| bad())?,
    );
    if i == 0 || i > total {
        return Err(bad());
    }
    if total != n {
        return Err(Error::Usage(format!(
            "--shard {text}: the plan has {n} shards, not {total}"
        )));
    }
    Ok(i - 1)
}

async fn run_shard(args: ShardArgs) -> Result<()> {
    let plan = Plan::load(&args.plan)?;
    let index = match (&args.shard, args.index) {
        (Some(s), _) => parse_shard(s, plan.shards.len())?,
        (None, Some(i)) => i,
        (None, None) => return Err(Error::Usage("give --index I or --shard I-of-N".into())),
    };
    let placement = match args.output {
        Some(dir) => Placement::Staged { dir },
        None => Placement::SharedTarget,
    };
    let task = ShardTask {
        index,
        placement,
        receipt: args.receipt.as_deref(),
        inputs: args.inputs.as_deref(),
        fetched: None,
    };
    // Into a store: the prefix is checked and the shard marked as writing there first.
    let mark = match task.placement == Placement::SharedTarget && fetch::is_store(&plan.output) {
        true => Some(remote::prepare_shared_target(&plan, index).await?),
        false => None,
    };
    let ran = run_shard_impl(&plan, &task).await;
    // Done or failed, the shard no longer writes there (the shard's error comes first).
    let finished = match mark {
        Some(mark) => mark.finish().await,
        None => Ok(()),
    };
    let (receipt, path) = ran?;
    finished?;
    println!(
        "shard {index}: {} cells, {} expression rows; receipt {}",
        receipt.cells_written,
        receipt.rows_written,
        path.display()
    );
    Ok(())
}

async fn run_convert(args: ConvertArgs) -> Result<()> {
    let options = ConvertOptions {
        dataset: ManifestOptions {
            chunk_size: args.chunk_size,
            compression: args.compression.0,
            pages: args.pages.0,
            id_types: args.id_types.0,
            indices: args.create_indices,
            ..ManifestOptions::default()
        },
        overwrite: args.overwrite,
        read: ReadOptions {
            format: args.format.map(|f| f.0),
            raw: args.raw.0,
            tenx: TenxOptions {
                var_names: args.var_names.0,
                make_unique: args.make_unique,
                feature_types: args.feature_types.clone(),
                genome: args.genome.clone(),
                cells_sorted: None,
            },
            soma: SomaOptions {
                measurement: args.measurement.clone(),
                x_layer: args.x_layer.clone(),
                obs_id_column: args.obs_id_column.clone(),
                var_id_column: args.var_id_column.clone(),
            },
        },
    };
    if args.read_only {
        let manifest = match (&args.manifest, &args.input) {
            (Some(m), _) => Manifest::load(m)?,
            (None, Some(input)) => single_input_manifest(
                input,
                args.output.as_deref().unwrap_or(Path::new("unused.slaf")),
                &options,
            )?,
            _ => return Err(Error::Usage("give INPUT or --manifest".into())),
        };
        if manifest.inputs.iter().any(|i| fetch::is_store(&i.path)) {
            return Err(Error::Usage(
                "--read-only reads local inputs only; fetch the input first".into(),
            ));
        }
        let started = std::time::Instant::now();
        let report = read_only(&manifest).await?;
        println!(
            "read only: {} cells, {} expression rows built in {:.2} s, nothing written",
            report.n_cells,
            report.expression_rows,
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let mut manifest = match (&args.manifest, &args.input, &args.output) {
        (Some(m), _, _) => Manifest::load(m)?,
        (None, Some(input), Some(output)) => single_input_manifest(input, output, &options)?,
        _ => return Err(Error::Usage("give INPUT OUTPUT or --manifest".into())),
    };
    if args.append {
        manifest.mode = Mode::Append;
    }
    if args.widen_stored_values {
        manifest.options.widen_stored_values = true;
    }
    if manifest.mode == Mode::Append && fetch::is_store(&manifest.output) {
        return Err(Error::Usage(
            "--append works on a local dataset, not an object store URI: append locally, then upload".into(),
        ));
    }
    let stores = std::iter::once(&manifest.output)
        .chain(manifest.inputs.iter().map(|i| &i.path))
        .any(|p| fetch::is_store(p));
    let report = match stores {
        true => {
            remote::convert_via_stores(&manifest, args.overwrite, args.temp_dir.as_deref()).await?
        }
        false => convert_manifest(&manifest, args.overwrite).await?,
    };
    let m = &report.marker;
    println!(
        "{}: {} cells x {} genes, {} expression rows ({:?} values)",
        report.output.display(),
        m.n_cells,
        m.n_genes,
        m.expression_rows,
        report.value_type,
    );
    Ok(())
}
