//! One function per subcommand; turns parsed arguments into library calls and prints results.

pub mod args;

use crate::convert::{convert, ConvertOptions};
use crate::error::Result;
use crate::schema::IdTypes;

use self::args::{Command, ConvertArgs, IdTypesArg, RawArg, VarNamesArg};
use crate::readers::tenx::{TenxOptions, VarNames};
use crate::readers::{RawMode, ReadOptions};

/// Run the parsed command.
pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Convert(args) => run_convert(args).await,
        Command::Inspect(args) => {
            print!(
                "{}",
                crate::inspect::describe(&args.dataset, args.rows).await?
            );
            Ok(())
        }
    }
}

async fn run_convert(args: ConvertArgs) -> Result<()> {
    let options = ConvertOptions {
        chunk_size: args.chunk_size,
        overwrite: args.overwrite,
        id_types: match args.id_types {
            IdTypesArg::Int32 => IdTypes::Int32,
            IdTypesArg::Compact => IdTypes::Compact,
        },
        read: ReadOptions {
            format: args.format,
            raw: match args.raw {
                RawArg::Ignore => RawMode::Ignore,
                RawArg::AsLayer => RawMode::AsLayer,
            },
            tenx: TenxOptions {
                var_names: match args.var_names {
                    VarNamesArg::GeneSymbols => VarNames::Symbols,
                    VarNamesArg::GeneIds => VarNames::GeneIds,
                },
                make_unique: args.make_unique,
                feature_types: args.feature_types.clone(),
                genome: args.genome.clone(),
            },
        },
    };
    let report = convert(&args.input, &args.output, &options).await?;
    let s = &report.summary;
    println!(
        "{}: {} cells x {} genes, {} expression rows ({:?} values), {} expression fragments",
        report.output.display(),
        s.n_cells,
        s.n_genes,
        s.stats.count,
        report.value_type,
        report.expression_fragments
    );
    Ok(())
}
